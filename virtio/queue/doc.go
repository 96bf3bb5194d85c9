// Package queue implements the device side of virtio virtqueues: the ring
// state a transport programs (size, ring addresses, negotiated ring
// features), validation of the rings against guest memory, popping and
// walking descriptor chains, returning used elements, and notification
// suppression (VIRTIO_RING_F_EVENT_IDX and the flag-based scheme).
//
// # Ownership
//
// A Queue is owned by its transport (virtio/transport/...), which programs
// it while the driver configures the device and calls Validate when the
// driver enables it. Between the device's Activate and Reset the device
// drives it, from one goroutine at a time: Queue is not safe for concurrent
// use. The guest is the only other party touching the rings, and every
// access to the shared index and flag words goes through mem.AtomicU16
// (sequentially consistent), so ordering with the guest is explicit:
//
//   - Pop reads avail.idx with acquire ordering before it reads ring
//     entries and descriptors;
//   - Publish stores used.idx with release ordering after the used
//     elements (and the device's writes into the buffers) are written;
//   - EnableNotifications stores used.flags/avail_event and then re-reads
//     avail.idx; NeedsInterrupt reads used_event/avail.flags after the
//     used.idx store. Both pairs are store->load ordered because the
//     accesses are sequentially consistent atomics.
//
// # Defensive walking
//
// The guest is untrusted. Ring addresses and alignment are checked once,
// in Validate; afterwards the rings are accessed through pre-sliced views.
// Every descriptor chain is walked with a time-to-live of the queue size
// (or of the indirect table's length inside an indirect table), every
// descriptor index is checked against its table, buffer addresses are
// checked for overflow and against guest memory, only one level of
// indirection is followed, readable buffers must precede writable ones,
// and a chain's total length must fit in 32 bits. A malformed chain is
// returned to the driver with used length 0 (so its descriptors are not
// leaked; an out-of-range head, which names no descriptors, is skipped),
// counted in Stats, and reported as an error that matches
// ErrMalformedChain; a driver that publishes more than the queue size of
// new entries, or skips so many heads that the used index falls half the
// 16-bit circle behind the avail index (where it would read as ahead, and
// a used ring laid over an avail ring would feed the device its own
// entries), breaks the queue for good (ErrBroken) until reset, and the
// device should then ask its transport for DEVICE_NEEDS_RESET.
//
// # Zero copies, zero allocations
//
// A Chain's Readable and Writable segments are []byte views straight into
// guest memory; the caller owns the Chain and reuses it, so after warm-up
// popping and walking a chain allocates nothing. Chain.ReadableIovecs and
// Chain.WritableIovecs expose the same segments as unix.Iovec arrays
// (also reused) for readv/writev without the per-call allocation of
// unix.Readv. Queue.PopCached hands out one Chain per head index, allocated
// once, for devices that keep several chains in flight (mergeable RX
// buffers) or see stable per-head shapes (TX through guest-cached indirect
// tables).
//
// # Formats
//
// Two formats sit behind the same methods, selected by
// VIRTIO_F_RING_PACKED in SetFeatures: the split ring (split.go) and the
// packed ring (packed.go, virtio 1.2 §2.8). The Queue's transport-facing
// half (queue.go) uses the spec's format-neutral terms (descriptor area,
// driver area, device area): for a packed ring they are the descriptor
// ring and the driver's and device's event suppression structures. A
// packed queue may have any size up to MaxSize(), keeps its positions
// as slot | wrap counter << 15 (NextAvail, NextUsed, SetNextAvail and
// SetNextUsed use that encoding, as vhost-user does), walks buffers with
// the same checks as the split ring, breaks on what leaves no buffer to
// complete (a buffer id >= size or already in flight, a chain whose NEXT
// leads to a descriptor not made available, a chain longer than the
// ring), and reads/writes the 16-bit flags words with the same ordered
// accessors: Pop loads the head's flags with acquire ordering, Publish
// stores the first new used descriptor's flags with release ordering.
//
// # Imports
//
// queue imports mem and the standard library (plus x/sys/unix for the
// Iovec type). It must not import virtio (virtio imports queue), kvm,
// devices, or any transport: it runs the same behind MMIO, PCI, vhost-user
// and in tests. The driver-side test double lives in queue/queuetest.
package queue
