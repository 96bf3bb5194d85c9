package vhostuser

import (
	"encoding/binary"
	"errors"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio"
)

// testDevice is a minimal virtio.Device that records its lifecycle.
type testDevice struct {
	sizes []uint16

	mu          sync.Mutex
	acked       uint64
	active      bool
	activations int
	resets      int
	queues      []virtio.Queue
	irq         virtio.Interrupt
	activateErr error
	config      [8]byte
}

func (d *testDevice) Type() virtio.DeviceID   { return virtio.DeviceEntropy }
func (d *testDevice) Features() uint64        { return virtio.CommonFeatures }
func (d *testDevice) QueueMaxSizes() []uint16 { return d.sizes }
func (d *testDevice) ConfigSize() int         { return len(d.config) }
func (d *testDevice) AckFeatures(f uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.acked = f
	return nil
}

func (d *testDevice) ReadConfig(off uint64, p []byte) {
	clear(p)
	if off < uint64(len(d.config)) {
		copy(p, d.config[off:])
	}
}

func (d *testDevice) WriteConfig(off uint64, p []byte) {
	if off < uint64(len(d.config)) {
		copy(d.config[off:], p)
	}
}

func (d *testDevice) Activate(m *mem.Memory, qs []virtio.Queue, irq virtio.Interrupt) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.activateErr != nil {
		return d.activateErr
	}
	d.active, d.queues, d.irq = true, qs, irq
	d.activations++
	return nil
}

func (d *testDevice) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.active {
		d.resets++
	}
	d.active, d.queues, d.irq, d.acked = false, nil, nil, 0
}

var errTest = errors.New("test device refuses")

func le64(v uint64) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, v)
	return b
}

func dupFD(t *testing.T, fd int) int {
	n, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// handler returns a function that hands s one message as the session's
// reader would (size checked, fds duplicated); an error fails the test.
func handler(t *testing.T, s *session) func(req, flags uint32, p []byte, fds ...int) {
	return func(req, flags uint32, p []byte, fds ...int) {
		t.Helper()
		msg := &message{hdr: header{Request: Request(req), Flags: FlagVersion | flags, Size: uint32(len(p))}, payload: p}
		if err := checkSize(msg.hdr); err != nil {
			t.Fatal(err)
		}
		for _, fd := range fds {
			msg.fds = append(msg.fds, dupFD(t, fd))
		}
		if err := s.handle(msg); err != nil {
			t.Fatalf("%v: %v", Request(req), err)
		}
	}
}
