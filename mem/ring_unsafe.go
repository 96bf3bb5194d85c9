package mem

// Ordered access to the 16-bit ring words (avail.idx, used.idx, flags and
// the event-index fields) that a device shares with its driver.
//
// Go's sync/atomic has no 16-bit operations, so a 16-bit field is reached
// through the naturally aligned 32-bit word that contains it:
//
//   - Load is atomic.LoadUint32 of that word and picks the half that holds
//     the field. The other half is read but ignored.
//   - Store is a compare-and-swap loop on the word that replaces only the
//     field's half and writes the other half back unchanged. The CAS only
//     succeeds if the other half did not change since it was read, so a
//     concurrent store by the guest into the neighbouring field is never
//     lost. The loop retries only when the guest changed the neighbour in
//     that window, and is bounded (see casTries); after that Store falls
//     back to a plain store between two fences, which is still a
//     single-copy-atomic aligned 16-bit store on every supported CPU.
//
// Every access is sequentially consistent (Go's atomics are): a Load has
// acquire semantics, a Store has release semantics, and a Store followed by
// a Load of another word is ordered (the store->load fence that notification
// suppression needs). On amd64 the CAS is LOCK CMPXCHG and the load a plain
// MOV; on arm64 they are CASAL (or LDAXR/STLXR) and LDAR.
//
// Why this is safe:
//   - The containing word is obtained only after the whole 4-byte word has
//     been checked to lie inside one RAM region, and the host address of the
//     word is checked to be 4-byte aligned, so the *uint32 is in bounds and
//     aligned as sync/atomic requires.
//   - The pointer points into memory that outlives the handle: guest RAM is
//     unmapped only by Memory.Close, after every device is stopped, and a
//     pointer into a Go-allocated test buffer keeps that buffer alive.
//   - When the word is not wholly inside RAM (a field at the very edge of a
//     region) or the host mapping is misaligned (only possible with
//     FromRegions over an odd Go slice), the handle keeps a bounds-checked
//     2-byte slice instead and brackets plain accesses with Fence; no
//     unsafe access happens in that mode.

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync/atomic"
	"unsafe"
)

// hostLittleEndian reports whether the host stores integers little-endian
// (virtio rings are always little-endian).
var hostLittleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// casTries bounds the compare-and-swap loop in AtomicU16.Store: a guest
// that hammers the neighbouring field cannot make the VMM spin.
const casTries = 64

// AtomicU16 is a handle on a 16-bit little-endian field of guest memory,
// shared with the guest, with sequentially consistent Load and Store. It is
// built once, when a ring is validated, and is then used without further
// bounds checks. The zero value is inert (Load returns 0, Store does
// nothing); build handles with Memory.AtomicU16.
type AtomicU16 struct {
	word  *uint32 // aligned containing word; nil in fallback mode
	shift uint8   // bit position of the field in the word's native value
	off   uint8   // byte offset of the field in the word (0 or 2)
	swap  bool    // host is big-endian: byte-swap the extracted half
	plain []byte  // fallback mode: the field's two bytes
}

// AtomicU16 returns an ordered-access handle on the 16-bit field at guest
// address addr, which must be 2-byte aligned and inside RAM.
func (m *Memory) AtomicU16(addr uint64) (AtomicU16, error) {
	if addr%2 != 0 {
		return AtomicU16{}, fmt.Errorf("16-bit ring field at %#x is not 2-byte aligned", addr)
	}
	field, ok := m.Within(addr, 2)
	if !ok {
		return AtomicU16{}, fmt.Errorf("%w: 16-bit ring field at %#x", ErrOutOfRange, addr)
	}
	wordAddr := addr &^ 3
	w, ok := m.Within(wordAddr, 4)
	if !ok || uintptr(unsafe.Pointer(&w[0]))%4 != 0 {
		return AtomicU16{plain: field}, nil
	}
	a := AtomicU16{word: (*uint32)(unsafe.Pointer(&w[0]))}
	byteOff := uint8(addr - wordAddr) // 0 or 2
	a.off = byteOff
	if hostLittleEndian {
		a.shift = 8 * byteOff
	} else {
		a.shift = 16 - 8*byteOff
		a.swap = true
	}
	return a, nil
}

// Valid reports whether a was built by Memory.AtomicU16.
func (a AtomicU16) Valid() bool { return a.word != nil || a.plain != nil }

// Atomic reports whether a uses 32-bit atomics (true) or the fenced plain
// fallback (false).
func (a AtomicU16) Atomic() bool { return a.word != nil }

// Load reads the field with acquire (indeed sequentially consistent)
// ordering: no later memory access is performed before it.
func (a AtomicU16) Load() uint16 {
	if a.word == nil {
		return a.loadPlain()
	}
	v := uint16(atomic.LoadUint32(a.word) >> a.shift)
	if a.swap {
		v = bits.ReverseBytes16(v)
	}
	return v
}

// Store writes the field with release (indeed sequentially consistent)
// ordering: every earlier memory access is visible before it, and it is
// ordered before any later Load. The other half of the containing word is
// preserved even if the guest writes it concurrently.
func (a AtomicU16) Store(v uint16) {
	if a.word == nil {
		a.storePlain(v)
		return
	}
	if a.swap {
		v = bits.ReverseBytes16(v)
	}
	mask := uint32(0xffff) << a.shift
	nv := uint32(v) << a.shift
	for range casTries {
		old := atomic.LoadUint32(a.word)
		if atomic.CompareAndSwapUint32(a.word, old, old&^mask|nv) {
			return
		}
	}
	// The guest keeps changing the other half. An aligned 16-bit store is
	// single-copy atomic in hardware; fence it so ordering still holds.
	Fence()
	*(*uint16)(unsafe.Add(unsafe.Pointer(a.word), a.off)) = v
	Fence()
}

// StoreWithNeighbour stores v into the field and other into the 16-bit
// field that shares its aligned 32-bit word, as one atomic store with
// release (indeed sequentially consistent) ordering: a reader of the word
// sees both new values or neither, and every earlier memory access before
// either. It reports false, storing nothing, for a handle in fallback
// mode; the caller then writes the neighbour itself and calls Store. A
// packed ring's descriptor id and flags share such a word: storing them
// together keeps a driver or device that polls the flags from ever
// reading the word while the id is half written.
func (a AtomicU16) StoreWithNeighbour(v, other uint16) bool {
	if a.word == nil {
		return false
	}
	if a.swap {
		v, other = bits.ReverseBytes16(v), bits.ReverseBytes16(other)
	}
	atomic.StoreUint32(a.word, uint32(v)<<a.shift|uint32(other)<<(16-a.shift))
	return true
}

func (a AtomicU16) loadPlain() uint16 {
	if a.plain == nil {
		return 0
	}
	Fence()
	v := binary.LittleEndian.Uint16(a.plain)
	Fence()
	return v
}

func (a AtomicU16) storePlain(v uint16) {
	if a.plain == nil {
		return
	}
	Fence()
	binary.LittleEndian.PutUint16(a.plain, v)
	Fence()
}

// Fence is a full memory barrier: memory accesses before it (loads and
// stores) are ordered before memory accesses after it, also as seen by the
// guest's vCPUs. It is a sequentially consistent read-modify-write on a
// stack word, which the Go compiler never removes or reorders across and
// which is a full barrier in hardware (LOCK XADD on amd64, LDADDAL on
// arm64 with LSE atomics; on ARMv8.0 without LSE Go uses an LDAXR/STLXR
// loop, which orders less). The ring code needs it only in the fallback
// paths: the atomic Load/Store above are already sequentially consistent.
func Fence() {
	var w uint32
	atomic.AddUint32(&w, 0)
}
