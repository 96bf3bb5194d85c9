package tap

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenExplainsWrongDevice: a name that exists and cannot be attached
// as asked fails with ErrWrongDevice and says why, instead of TUNSETIFF's
// bare EINVAL or EBUSY: not a TAP (loopback, a veth), a TUN device, a
// multi_queue mismatch either way, a single-queue TAP another descriptor
// holds, and CreateNew of a name in use. A missing name is still ENODEV.
func TestOpenExplainsWrongDevice(t *testing.T) {
	ns := enterNetns(t)
	ns.ip("link", "add", "flt-veth", "type", "veth", "peer", "name", "flt-peer")
	ns.ip("tuntap", "add", "flt-tun", "mode", "tun")
	ns.ip("tuntap", "add", "flt-sq", "mode", "tap")
	ns.ip("tuntap", "add", "flt-mq", "mode", "tap", "multi_queue")

	held, err := Open(Options{Name: "flt-sq"})
	if err != nil {
		t.Fatal(err)
	}
	// A second single-queue open of flt-sq is refused while held is open.
	for _, c := range []struct {
		opts Options
		want string
	}{
		{Options{Name: "lo", Mode: OpenOrCreate}, "is not a TAP"},
		{Options{Name: "flt-veth", Mode: OpenOrCreate}, "is a veth device, not a TAP"},
		{Options{Name: "flt-tun"}, "TUN (layer 3) device"},
		{Options{Name: "flt-sq", Queues: 2}, "made without multi_queue"},
		{Options{Name: "flt-mq"}, "made with multi_queue"},
		{Options{Name: "flt-sq"}, "another process holds this TAP"},
		{Options{Name: "flt-mq", Mode: CreateNew, Queues: 2}, "exists already"},
	} {
		_, err := Open(c.opts)
		if !errors.Is(err, ErrWrongDevice) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%+v) = %v, want ErrWrongDevice saying %q", c.opts, err, c.want)
		}
	}
	held.Close()
	// What was wrong only while held was open is not wrong now, and a
	// missing name is ENODEV as before.
	tp, err := Open(Options{Name: "flt-sq"})
	if err != nil {
		t.Fatalf("Open of the released TAP: %v", err)
	}
	tp.Close()
	if _, err := Open(Options{Name: "flt-none"}); !errors.Is(err, unix.ENODEV) || errors.Is(err, ErrWrongDevice) {
		t.Errorf("Open of a missing interface: %v, want ENODEV", err)
	}
}
