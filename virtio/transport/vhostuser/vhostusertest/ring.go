package vhostusertest

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio/queue"
)

// Descriptor flags.
const (
	DescNext     = 1
	DescWrite    = 2
	DescIndirect = 4
)

// Buf is one buffer of a chain: guest address, length, device-writable.
type Buf struct {
	Addr  uint64
	Len   uint32
	Write bool
}

// Ring is the driver side of one split ring in a Memory: descriptor
// table, avail and used rings, a kick eventfd and a call pipe or eventfd.
// Adding, publishing and reading used elements allocate nothing, so
// benchmarks through it measure the backend.
type Ring struct {
	Mem                           *Memory
	Size                          uint16
	DescAddr, AvailAddr, UsedAddr uint64 // guest-physical
	EventIdx                      bool

	// Kick is the eventfd the frontend writes (its dup goes to the
	// backend with SET_VRING_KICK).
	Kick *os.File
	// CallR is read by the frontend; CallW goes to the backend with
	// SET_VRING_CALL (close it after sending, as UML does).
	CallR, CallW *os.File

	availIdx, usedIdx, usedEvent mem.AtomicU16
	nextAvail, lastUsed          uint16
	free                         []uint16
	callBuf                      [64]byte
}

// NewRing lays out a ring of size entries in m. With pipe the call fd is
// a pipe (UML), otherwise an eventfd (QEMU).
func NewRing(m *Memory, size uint16, eventIdx, pipe bool) (*Ring, error) {
	r := &Ring{Mem: m, Size: size, EventIdx: eventIdx}
	r.DescAddr = m.Alloc(queue.DescTableBytes(size), 16)
	r.AvailAddr = m.Alloc(queue.AvailRingBytes(size), 2)
	r.UsedAddr = m.Alloc(queue.UsedRingBytes(size)+2, 4096)
	var err error
	if r.availIdx, err = m.M.AtomicU16(r.AvailAddr + 2); err != nil {
		return nil, err
	}
	if r.usedIdx, err = m.M.AtomicU16(r.UsedAddr + 2); err != nil {
		return nil, err
	}
	if r.usedEvent, err = m.M.AtomicU16(r.AvailAddr + 4 + 2*uint64(size)); err != nil {
		return nil, err
	}
	for i := int(size) - 1; i >= 0; i-- {
		r.free = append(r.free, uint16(i))
	}
	kfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	r.Kick = os.NewFile(uintptr(kfd), "kick")
	if pipe {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
			return nil, err
		}
		r.CallR, r.CallW = os.NewFile(uintptr(p[0]), "call-r"), os.NewFile(uintptr(p[1]), "call-w")
	} else {
		cfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			return nil, err
		}
		r.CallR = os.NewFile(uintptr(cfd), "call")
		r.CallW = r.CallR
	}
	return r, nil
}

// Close closes the ring's fds.
func (r *Ring) Close() {
	r.Kick.Close()
	r.CallR.Close()
	if r.CallW != r.CallR {
		r.CallW.Close()
	}
}

// UserAddrs are the ring's addresses as the frontend's user addresses,
// in SET_VRING_ADDR's order: desc, used, avail.
func (r *Ring) UserAddrs() (desc, used, avail uint64) {
	return r.Mem.User(r.DescAddr), r.Mem.User(r.UsedAddr), r.Mem.User(r.AvailAddr)
}

// SetDesc writes descriptor i raw.
func (r *Ring) SetDesc(i uint16, addr uint64, n uint32, flags, next uint16) {
	WriteDesc(r.Mem.Bytes(r.DescAddr+16*uint64(i), 16), addr, n, flags, next)
}

// WriteDesc encodes one descriptor into b (16 bytes).
func WriteDesc(b []byte, addr uint64, n uint32, flags, next uint16) {
	le.PutUint64(b[0:], addr)
	le.PutUint32(b[8:], n)
	le.PutUint16(b[12:], flags)
	le.PutUint16(b[14:], next)
}

// Add writes bufs as one direct chain and puts its head in the avail
// ring (visible at Publish). It returns the head.
func (r *Ring) Add(bufs ...Buf) (uint16, error) {
	if len(bufs) == 0 || len(bufs) > len(r.free) {
		return 0, fmt.Errorf("vhostusertest: %d buffers, %d free descriptors", len(bufs), len(r.free))
	}
	n := len(r.free)
	idx := r.free[n-len(bufs):]
	for i, b := range bufs {
		var flags, next uint16
		if b.Write {
			flags |= DescWrite
		}
		if i+1 < len(bufs) {
			flags |= DescNext
			next = idx[len(idx)-2-i]
		}
		r.SetDesc(idx[len(idx)-1-i], b.Addr, b.Len, flags, next)
	}
	head := idx[len(idx)-1]
	r.free = r.free[:n-len(bufs)]
	r.AddHead(head)
	return head, nil
}

// AddHead puts head in the next avail slot (raw).
func (r *Ring) AddHead(head uint16) {
	slot := r.AvailAddr + 4 + 2*uint64(r.nextAvail&(r.Size-1))
	le.PutUint16(r.Mem.Bytes(slot, 2), head)
	r.nextAvail++
}

// Publish stores avail.idx (release).
func (r *Ring) Publish() { r.availIdx.Store(r.nextAvail) }

// SetAvailIdx stores avail.idx raw (a hostile jump).
func (r *Ring) SetAvailIdx(v uint16) {
	r.nextAvail = v
	r.availIdx.Store(v)
}

// AvailIdx is the driver's avail index.
func (r *Ring) AvailIdx() uint16 { return r.nextAvail }

// UsedIdx reads used.idx (acquire).
func (r *Ring) UsedIdx() uint16 { return r.usedIdx.Load() }

// Notify writes the kick eventfd.
func (r *Ring) Notify() error {
	var one = [8]byte{1}
	_, err := r.Kick.Write(one[:])
	return err
}

// PublishAndNotify publishes and kicks.
func (r *Ring) PublishAndNotify() error {
	r.Publish()
	return r.Notify()
}

// UsedRaw returns the next used element without touching descriptors
// (for rings a test filled with raw, possibly looping, chains).
func (r *Ring) UsedRaw() (id, n uint32, ok bool) {
	if r.usedIdx.Load() == r.lastUsed {
		return 0, 0, false
	}
	e := r.Mem.Bytes(r.UsedAddr+4+8*uint64(r.lastUsed&(r.Size-1)), 8)
	r.lastUsed++
	return le.Uint32(e[0:]), le.Uint32(e[4:]), true
}

// Used returns the next used element, freeing its chain's descriptors
// (the chain is assumed direct: its descriptors are followed by NEXT).
func (r *Ring) Used() (id, n uint32, ok bool) {
	id, n, ok = r.UsedRaw()
	if !ok || id >= uint32(r.Size) {
		return id, n, ok
	}
	d := uint16(id)
	for ttl := r.Size; ttl > 0; ttl-- {
		r.free = append(r.free, d)
		desc := r.Mem.Bytes(r.DescAddr+16*uint64(d), 16)
		if le.Uint16(desc[12:])&DescNext == 0 {
			break
		}
		d = le.Uint16(desc[14:]) & (r.Size - 1)
	}
	return id, n, true
}

// ErrTimeout is returned by WaitUsed when nothing was used in time.
var ErrTimeout = errors.New("vhostusertest: no used element in time")

// WaitUsed waits for the next used element: it asks for an interrupt
// (used_event, with EVENT_IDX), re-checks the ring, and reads the call
// fd until the device signals or timeout passes.
func (r *Ring) WaitUsed(timeout time.Duration) (id, n uint32, err error) {
	deadline := time.Now().Add(timeout)
	for {
		if id, n, ok := r.Used(); ok {
			return id, n, nil
		}
		r.EnableInterrupts()
		if id, n, ok := r.Used(); ok {
			return id, n, nil
		}
		if !time.Now().Before(deadline) {
			return 0, 0, ErrTimeout
		}
		r.CallR.SetReadDeadline(deadline)
		r.CallR.Read(r.callBuf[:])
	}
}

// Signalled drains the call fd and reports whether anything was written
// to it since the last drain.
func (r *Ring) Signalled() bool {
	r.CallR.SetReadDeadline(time.Now())
	n, _ := r.CallR.Read(r.callBuf[:])
	return n > 0
}

// EnableInterrupts asks for an interrupt at the next used element
// (used_event = next index to read, with EVENT_IDX; without it the
// driver never sets VIRTQ_AVAIL_F_NO_INTERRUPT).
func (r *Ring) EnableInterrupts() {
	if r.EventIdx {
		r.usedEvent.Store(r.lastUsed)
	}
}

// WaitSignal waits up to timeout for the device to write the call fd and
// drains it; it reports whether it did.
func (r *Ring) WaitSignal(timeout time.Duration) bool {
	r.CallR.SetReadDeadline(time.Now().Add(timeout))
	n, _ := r.CallR.Read(r.callBuf[:])
	return n > 0
}

// Resume restarts the driver at avail index avail (after GET_VRING_BASE
// reported it) with every descriptor free again, as a driver that
// re-initialises its ring.
func (r *Ring) Resume(avail uint16) {
	r.nextAvail = avail
	r.availIdx.Store(avail)
	r.lastUsed = r.usedIdx.Load()
	r.free = r.free[:0]
	for i := int(r.Size) - 1; i >= 0; i-- {
		r.free = append(r.free, uint16(i))
	}
}

// Free is the number of free descriptors.
func (r *Ring) Free() int { return len(r.free) }
