package configs

import (
	"strings"
	"testing"
	"time"
)

// TestNetIRQGap: --net ...,rx_irq_gap=D,tx_irq_gap=D set the interrupt
// gaps (defaults DefaultRxIRQGap and 0) and poll=D the busy-poll window
// (default 0); negative, over MaxIRQGap (MaxPoll) and malformed
// durations are refused with the key named.
func TestNetIRQGap(t *testing.T) {
	n, err := ParseNetFlag("tap=t0")
	if err != nil || n.RxIRQGap != DefaultRxIRQGap || n.TxIRQGap != 0 || n.Poll != 0 {
		t.Fatalf("defaults: rx %v tx %v poll %v, %v", n.RxIRQGap, n.TxIRQGap, n.Poll, err)
	}
	if n, err = ParseNetFlag("tap=t0,rx_irq_gap=0,tx_irq_gap=1ms,poll=200us"); err != nil || n.RxIRQGap != 0 || n.TxIRQGap != time.Millisecond || n.Poll != 200*time.Microsecond {
		t.Fatalf("rx_irq_gap=0,tx_irq_gap=1ms,poll=200us: rx %v tx %v poll %v, %v", n.RxIRQGap, n.TxIRQGap, n.Poll, err)
	}
	if n, err = ParseNetFlag("tap=t0,irq_resend=250us"); err != nil || n.IRQResend != 250*time.Microsecond {
		t.Fatalf("irq_resend=250us: %v, %v", n.IRQResend, err)
	}
	for _, key := range []string{"rx_irq_gap", "tx_irq_gap", "irq_resend", "poll"} {
		for _, bad := range []string{"-1us", "1001us", "2ms", "50", "fast", ""} {
			if _, err := ParseNetFlag("tap=t0," + key + "=" + bad); err == nil || !strings.Contains(err.Error(), key) {
				t.Errorf("%s=%s: %v", key, bad, err)
			}
		}
	}
	if err := (NetInterface{TAP: "t0", MTU: 1500, TxIRQGap: -time.Microsecond}).Validate(); err == nil || !strings.Contains(err.Error(), "tx_irq_gap") {
		t.Errorf("Validate accepted a negative gap: %v", err)
	}
	if err := (NetInterface{TAP: "t0", MTU: 1500, Poll: MaxPoll + 1}).Validate(); err == nil || !strings.Contains(err.Error(), "poll") {
		t.Errorf("Validate accepted a window over MaxPoll: %v", err)
	}
}

// TestFlintNetIRQGap: the config file's flint.network-interfaces.ID
// rx_irq_gap, tx_irq_gap and poll, duration strings; absent keeps the
// default.
func TestFlintNetIRQGap(t *testing.T) {
	doc := `{"boot-source": {"kernel_image_path": "k"}, "machine-config": {"vcpu_count": 2, "mem_size_mib": 256},
	  "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0"}, {"iface_id": "eth1", "host_dev_name": "tap1"}],
	  "flint": {"network-interfaces": {"eth0": {"rx_irq_gap": "0s", "tx_irq_gap": "20us", "poll": "100us", "irq_resend": "300us"}}}}`
	c, err := DecodeVMConfig([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	nets, err := c.NetInterfaces()
	if err != nil {
		t.Fatal(err)
	}
	if nets[0].RxIRQGap != 0 || nets[0].TxIRQGap != 20*time.Microsecond || nets[1].RxIRQGap != DefaultRxIRQGap || nets[1].TxIRQGap != 0 {
		t.Fatalf("eth0 rx %v tx %v, eth1 rx %v tx %v", nets[0].RxIRQGap, nets[0].TxIRQGap, nets[1].RxIRQGap, nets[1].TxIRQGap)
	}
	if nets[0].Poll != 100*time.Microsecond || nets[1].Poll != 0 {
		t.Fatalf("poll: eth0 %v, eth1 %v", nets[0].Poll, nets[1].Poll)
	}
	if nets[0].IRQResend != 300*time.Microsecond || nets[1].IRQResend != 0 {
		t.Fatalf("irq_resend: eth0 %v, eth1 %v", nets[0].IRQResend, nets[1].IRQResend)
	}
	for key, good := range map[string]string{"tx_irq_gap": `"20us"`, "poll": `"100us"`, "irq_resend": `"300us"`} {
		for _, bad := range []string{`"2ms"`, `"-5us"`, `50`, `"soon"`} {
			d := strings.Replace(doc, `"`+key+`": `+good, `"`+key+`": `+bad, 1)
			if _, err := DecodeVMConfig([]byte(d)); err == nil || !strings.Contains(err.Error(), key) {
				t.Errorf("%s %s: %v", key, bad, err)
			}
		}
	}
}
