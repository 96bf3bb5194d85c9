package queue

import "errors"

// ErrBroken reports that the driver broke the queue: on a split ring it
// made more than the queue size of new entries available (avail.idx -
// last_avail > size), or named so many heads out of range (ErrHeadIndex)
// that the used index fell half the 16-bit circle behind; on a packed ring it named a buffer id >= size or one
// still in flight, or chained (NEXT) into a descriptor it had not made
// available, or past a whole ring; or the queue was already broken.
// Nothing more is popped until the transport resets the queue; the device
// should report DEVICE_NEEDS_RESET.
var ErrBroken = errors.New("virtqueue broken: the driver violated the ring protocol (split: avail.idx advanced more than the queue size; packed: bad buffer id or chain)")

// ErrNotReady reports an operation on a queue that has not been validated
// (the driver has not enabled it) or has been reset since.
var ErrNotReady = errors.New("virtqueue not ready")

// ErrMalformedChain matches (with errors.Is) every ChainError: a single
// descriptor chain was malformed, was completed with used length 0, and
// the queue keeps working.
var ErrMalformedChain = errors.New("malformed descriptor chain")

// ChainError says why a descriptor chain was rejected. Converting one to
// an error does not allocate, so the device's hot loop stays
// allocation-free even against a hostile driver.
type ChainError uint8

// The reasons a chain is rejected.
const (
	// ErrHeadIndex: the avail ring names a head index >= queue size. The
	// entry is skipped without a used element (there are no descriptors
	// to give back); the skip that leaves the used index 32768 entries
	// behind the avail index breaks the queue instead (ErrBroken).
	ErrHeadIndex ChainError = iota + 1
	// ErrDescIndex: a next field points outside the descriptor table (or
	// outside the indirect table while walking one).
	ErrDescIndex
	// ErrChainLoop: the chain has more descriptors than its table (queue
	// size, or indirect table length): it loops.
	ErrChainLoop
	// ErrBufferAddress: a buffer's [addr, addr+len) overflows or is not
	// inside guest memory.
	ErrBufferAddress
	// ErrReadAfterWrite: a device-readable descriptor follows a
	// device-writable one.
	ErrReadAfterWrite
	// ErrChainTooLong: the chain's total length reaches 2^32 bytes.
	ErrChainTooLong
	// ErrTooManySegments: the chain has more non-empty buffers than the
	// queue's segment limit (see Queue.SetMaxSegments).
	ErrTooManySegments
	// ErrIndirectNotNegotiated: VIRTQ_DESC_F_INDIRECT without
	// VIRTIO_F_RING_INDIRECT_DESC.
	ErrIndirectNotNegotiated
	// ErrIndirectNext: a descriptor has both INDIRECT and NEXT.
	ErrIndirectNext
	// ErrIndirectNested: an indirect table contains an INDIRECT descriptor.
	ErrIndirectNested
	// ErrIndirectLen: an indirect table's length is 0, not a multiple of
	// 16, or longer than 65536 descriptors.
	ErrIndirectLen
	// ErrIndirectAddress: an indirect table is not inside one region of
	// guest memory.
	ErrIndirectAddress

	numChainErrors = iota + 1
)

var chainErrorText = [numChainErrors]string{
	0:                        "descriptor chain error",
	ErrHeadIndex:             "head index out of range",
	ErrDescIndex:             "descriptor index out of range",
	ErrChainLoop:             "descriptor chain loops (longer than its table)",
	ErrBufferAddress:         "buffer outside guest memory",
	ErrReadAfterWrite:        "device-readable descriptor after a device-writable one",
	ErrChainTooLong:          "descriptor chain of 4 GiB or more",
	ErrTooManySegments:       "descriptor chain has too many buffers",
	ErrIndirectNotNegotiated: "indirect descriptor without VIRTIO_F_RING_INDIRECT_DESC",
	ErrIndirectNext:          "indirect descriptor with NEXT flag",
	ErrIndirectNested:        "nested indirect descriptor",
	ErrIndirectLen:           "bad indirect table length",
	ErrIndirectAddress:       "indirect table outside guest memory",
}

// Error describes the reason.
func (e ChainError) Error() string {
	if int(e) < len(chainErrorText) {
		return "malformed descriptor chain: " + chainErrorText[e]
	}
	return "malformed descriptor chain"
}

// Is makes every ChainError match ErrMalformedChain.
func (e ChainError) Is(target error) bool { return target == ErrMalformedChain }
