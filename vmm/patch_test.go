package vmm

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/ratelimit"
	"github.com/flintvm/flint/virtio/blk"
	"github.com/flintvm/flint/virtio/transport"
)

// These tests build a Machine's device lists by hand (no KVM here): what
// they check is the vmm's bookkeeping around the devices.

// closeCounter is a transport that counts Close calls.
type closeCounter struct{ closed int }

func (f *closeCounter) Close()                       { f.closed++ }
func (f *closeCounter) Snapshot() transport.Snapshot { return transport.Snapshot{} }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// drive opens a virtio-blk device over a new image of size bytes.
func testDrive(t *testing.T, size int, lim *ratelimit.Limiter) (*blk.Device, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := blk.Open(p, blk.Options{ID: "d", Limiter: lim})
	if err != nil {
		t.Fatal(err)
	}
	return d, p
}

// TestCloseClosesDriveTransports is issue 13 finding 10: Close closes
// every drive's transport (resetting the device and releasing its kick
// eventfds), which addDrives used to drop.
func TestCloseClosesDriveTransports(t *testing.T) {
	d1, img := testDrive(t, 4096, nil)
	d2, _ := testDrive(t, 4096, nil)
	tr1, tr2 := &closeCounter{}, &closeCounter{}
	m := &Machine{log: quiet(), drives: []*blk.Device{d1, d2}, driveIDs: []string{"a", "b"},
		driveTrs: []virtioTransport{tr1, tr2}}
	m.Close()
	m.Close()
	if tr1.closed != 1 || tr2.closed != 1 {
		t.Fatalf("transports closed %d and %d times, want once each", tr1.closed, tr2.closed)
	}
	if err := d1.ReplaceImage(img); err == nil || !strings.Contains(err.Error(), "device closed") {
		t.Fatalf("drive still open after Close: %v", err)
	}
}

func TestUpdateDrive(t *testing.T) {
	lim, err := deviceLimiter(nil, true)
	if err != nil || lim == nil || !lim.Config().Unlimited() {
		t.Fatalf("patchable limiter: %v %v", lim, err)
	}
	dev, _ := testDrive(t, 4096, lim)
	bare, _ := testDrive(t, 4096, nil)
	m := &Machine{log: quiet(), drives: []*blk.Device{dev, bare}, driveIDs: []string{"d", "bare"}}
	next := filepath.Join(t.TempDir(), "next.img")
	if err := os.WriteFile(next, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	ops := &ratelimit.Config{Ops: ratelimit.BucketConfig{Size: 10, RefillTime: 100}}
	if err := m.UpdateDrive("d", next, ops); err != nil {
		t.Fatal(err)
	}
	if lim.Config() != *ops {
		t.Fatalf("limiter %+v after the update", lim.Config())
	}
	if err := m.UpdateDrive("d", "", nil); err != nil {
		t.Fatalf("an update that changes nothing: %v", err)
	}
	bad := &ratelimit.Config{Bandwidth: ratelimit.BucketConfig{Size: 10}}
	for _, tc := range []struct {
		id, path string
		rl       *ratelimit.Config
		want     string
	}{
		{"nope", next, nil, `no drive "nope"`},
		{"d", next, bad, "rate_limiter: bandwidth.refill_time"},
		{"d", filepath.Join(t.TempDir(), "missing"), nil, "no such file"},
		{"bare", "", ops, "built without a rate limiter"},
	} {
		if err := m.UpdateDrive(tc.id, tc.path, tc.rl); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("UpdateDrive(%q, %q): %v, want an error containing %q", tc.id, tc.path, err, tc.want)
		}
	}
	if lim.Config() != *ops {
		t.Fatalf("a refused update changed the limiter: %+v", lim.Config())
	}
	m.Close()
	if err := m.UpdateDrive("d", next, nil); err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("after Close: %v", err)
	}
}

func TestUpdateNetInterface(t *testing.T) {
	rx, _ := deviceLimiter(nil, true)
	tx, _ := deviceLimiter(nil, false)
	if tx != nil {
		t.Fatal("a limiter for an unlimited device without PatchableLimiters")
	}
	other, _ := deviceLimiter(nil, true)
	m := &Machine{log: quiet(), nets: []*netDevice{
		{cfg: configs.NetInterface{ID: "eth0", TAP: "tap0"}, rx: rx, tx: tx},
		{cfg: configs.NetInterface{TAP: "tap1"}, rx: other}, // a --net interface: named by its TAP
	}}
	bw := &ratelimit.Config{Bandwidth: ratelimit.BucketConfig{Size: 1 << 20, RefillTime: 100}}
	if err := m.UpdateNetInterface("eth0", bw, nil); err != nil {
		t.Fatal(err)
	}
	if rx.Config() != *bw {
		t.Fatalf("rx %+v", rx.Config())
	}
	if err := m.UpdateNetInterface("tap1", bw, nil); err != nil || other.Config() != *bw {
		t.Fatalf("by TAP name: %v %+v", err, other.Config())
	}
	// Both are checked before either changes.
	if err := m.UpdateNetInterface("eth0", &ratelimit.Config{}, bw); err == nil || !strings.Contains(err.Error(), "tx_rate_limiter: the device was built without") {
		t.Fatalf("tx without a limiter: %v", err)
	}
	if rx.Config() != *bw {
		t.Fatalf("a refused update changed rx: %+v", rx.Config())
	}
	if err := m.UpdateNetInterface("eth9", bw, nil); err == nil || !strings.Contains(err.Error(), `no network interface "eth9"`) {
		t.Fatalf("unknown interface: %v", err)
	}
	m.devicesClosed = true
	if err := m.UpdateNetInterface("eth0", bw, nil); err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("after Close: %v", err)
	}
}
