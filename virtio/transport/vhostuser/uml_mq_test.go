package vhostuser_test

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flintvm/flint/internal/umlhost/umltest"
	"github.com/flintvm/flint/virtio/netdev"
)

// umlMQInit is umlInit that also prints the negotiated features and the
// queues the interface has in use.
var umlMQInit = strings.Replace(umlInit, "sleep 1\n",
	"sleep 1\necho \"FEATURES=$(cat /sys/class/net/eth0/device/features) QUEUES=$(cd /sys/class/net/eth0/queues && echo * | tr ' ' ,)\"\n", 1)

// TestUMLMultiqueue boots user-mode Linux against a device with two
// queue pairs: Linux's virtio_net negotiates MQ, sets up all five rings
// over vhost-user (rx/tx of each pair and the control queue at 4, each
// with UML's 256 entries) and, with one CPU, sends VQ_PAIRS_SET 1 at
// probe (so sysfs shows one queue each way), which the device answers
// before the ping goes through pair 1. (UML has no second CPU and the
// image no ethtool: pair 2's traffic is the nested host's case.)
func TestUMLMultiqueue(t *testing.T) {
	if testing.Short() {
		t.Skip("boots user-mode Linux")
	}
	dir := t.TempDir()
	initrd := umltest.Initramfs(t, dir, umlMQInit, "net/core/failover.ko", "drivers/net/net_failover.ko", "drivers/net/virtio_net.ko")
	bes := []*pingResponder{{fakeBackend: newFake()}, {fakeBackend: newFake()}}
	dev, err := netdev.NewMulti([]netdev.Backend{bes[0], bes[1]}, netdev.Options{MAC: testMAC, MTU: 1400})
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	sock := filepath.Join(dir, "net.sock")
	umltest.Serve(t, dev, sock, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	out := runUML(t, dir, initrd, sock)
	if testing.Verbose() {
		t.Logf("console:\n%s", out)
	}
	_, rest, _ := strings.Cut(out, "FEATURES=")
	feats, _, _ := strings.Cut(rest, " ")
	if len(feats) < 23 || feats[netdev.FeatureMQ] != '1' || !strings.Contains(out, "QUEUES=rx-0,tx-0") || !strings.Contains(out, "PING-OK") {
		t.Fatalf("MQ negotiated, one pair in use and a ping expected; console:\n%s", out)
	}
	waitStats(t, dev, func(st netdev.Stats) bool { return st.CtrlCommands >= 1 && st.TxPackets >= 3 })
	if st := dev.Stats(); st.CtrlRejected != 0 || dev.ActivePairs() != 1 {
		t.Fatalf("control queue: %d rejected, %d pairs in use (stats %+v)", st.CtrlRejected, dev.ActivePairs(), st)
	}
	if ps := dev.PairStats(); ps[0].TxPackets < 3 || ps[0].RxPackets < 3 {
		t.Fatalf("pair 1 carried too little: %+v", ps)
	}
}
