// Package netdev is Flint's virtio-net device (virtio 1.2 §5.1): one or
// more receive/transmit queue pairs (multiqueue, FeatureMQ), an optional
// control queue, and a Backend per pair (a TAP queue with IFF_VNET_HDR,
// in production) that carries every frame with the 12-byte virtio-net
// header in front. Import it under another name
// (e.g. virtionet) next to the standard library's net.
//
// # What it owns
//
//   - The device identity, the offered features (Options.Features, with
//     the spec's dependency rules checked on offer and on
//     acknowledgement) and the configuration space (mac, status,
//     max_virtqueue_pairs, mtu).
//   - The data path, on two goroutines per queue pair started by
//     Activate and joined by Reset: RX (backend -> guest) and TX (guest
//     -> backend), plus one for the control queue when CTRL_VQ is
//     negotiated. Each runs a virtio.Engine (the loop every device
//     shares); rx.go, tx.go and ctrl.go are the per-chain work it calls.
//   - Multiqueue (mq.go): with Options.Queues = N > 1 (NewMulti, one
//     backend per pair) the device offers MQ and CTRL_VQ, lays the queues
//     out as receiveq1, transmitq1, ..., receiveqN, transmitqN, controlq
//     (index 2N), and runs every pair whose queues the driver enabled.
//     Until the driver's VQ_PAIRS_SET only pair 1 carries traffic: the
//     backends of the others are detached (Steerer: a TAP queue's
//     TUNSETQUEUE), so the host steers nothing to them. VQ_PAIRS_SET
//     (exactly a le16 of 1 to N) attaches the first pairs and detaches
//     the rest before it is acknowledged, each once nothing waits on it
//     (Drainer, at most drainWait: a TAP drops what is queued on a queue
//     it detaches, so the pair's engines deliver it first), with the
//     host's steering pinned to pair 1 from the drain to the detach
//     (Pinner: a TAP steering program), so that new frames do not reach
//     the queue in between; a detached pair's engines keep running. The
//     attaches and detaches are rate-limited (each costs the host a
//     grace period under its RTNL lock): a driver flapping the count
//     waits for its answers. Resume (virtio.Resumer: vhost-user's
//     session restarting the device without its driver's reset) keeps
//     the pairs the driver chose, as many as started at most; Activate
//     starts over on pair 1. RSS and
//     HASH_REPORT are not offered (RSS_CONFIG and HASH_CONFIG get ERR).
//     PairStats counts each pair's traffic.
//   - Mapping the negotiated GUEST_* features onto the backend's receive
//     offloads (Options.SetOffload, called from AckFeatures and Reset).
//
// # Receive
//
// Frames are read with one readv straight into the guest's buffers; the
// header the backend writes is the header the guest reads (the device
// only writes num_buffers, and clears flags the driver did not
// negotiate). The three buffer layouts a Linux driver uses are served by
// one mechanism: the device pops buffers until they can hold the largest
// frame the negotiated features allow (65562 bytes with GUEST_TSO4/6 or
// UFO, else MTU + 30), reads one frame, and completes only the buffers
// the frame filled:
//
//   - mergeable (MRG_RXBUF): single-descriptor buffers of any size are
//     gathered into one iovec array; the frame uses as few of them as it
//     needs, in ring order, num_buffers says how many;
//   - big (GUEST_TSO/UFO without MRG_RXBUF) and small (neither): one
//     chain per frame, num_buffers = 1.
//
// Buffers a frame did not use stay with the device for the next frame,
// in one window type (window.go) that keeps them across flushes: each
// buffer is walked once, when popped. They are given back to the ring
// (queue.Undo) whenever the backend runs dry and at Reset, so the
// queue's next-avail index counts exactly the buffers the device
// completed once it stops or idles (what vhost-user GET_VRING_BASE and
// dumps report). Only while it waits for the driver to add buffers does
// it keep a partial set popped.
//
// Back-pressure: when the guest has too little buffer space for a
// maximum frame, the device stops reading the backend (frames wait in
// the kernel's TAP queue), enables notifications, re-checks the ring to
// close the race with the driver, and sleeps until the driver kicks the
// receive queue. It never reads a frame it might have to drop for lack
// of room. In mergeable mode, a ring that is entirely posted yet smaller
// than a maximum frame (e.g. 16 buffers of 1.5 KiB with GSO) is read
// into anyway, so it cannot stall; so is one of which the device holds
// at least half with nothing more posted (a driver that refills only
// after it received, as Linux does below min(64, size)/2 free buffers,
// would never kick): the frame goes into the held buffers and a bounce
// buffer behind them, and one that ran past the held buffers waits there,
// read and checked, until the driver adds buffers for its rest.
//
// Drops (counted in Stats, never shown to the guest): a frame larger
// than the buffers (readv has a small device-owned overflow buffer after
// the guest's, so truncation is always detected, never delivered); with
// MTU negotiated, a non-GSO frame above the MTU; a frame shorter than
// header plus Ethernet header; a frame whose header carries an offload
// the driver did not negotiate. A dropped frame's buffers are not
// completed; the next frame reuses them. Receive chains too small for a
// header are completed with length 0 (a driver bug), as the queue does
// for malformed chains.
//
// # Transmit
//
// Each chain's device-readable buffers are written as one frame with one
// writev (header included, whether it has its own descriptor or shares
// one with data); used length is 0. When the backend pushes back
// (EAGAIN), the device gives the chain back, publishes what it finished
// and waits for the backend to become writable; it neither spins nor
// drops. Frames the backend refuses (a malformed header, interface
// down) are dropped and counted.
//
// Both directions batch: up to 64 packets per publish, and one
// interrupt per publish when the queue's notification suppression
// (EVENT_IDX or flags) asks for it. The steady state allocates nothing:
// chains are the queue's per-head cached chains, iovec arrays and
// completion lists are reused, counters are published per batch.
//
// A queue the driver breaks (queue.ErrBroken) makes the device ask for
// DEVICE_NEEDS_RESET and park that queue's goroutine until Reset.
// Malformed chains are already completed by the queue; they are counted.
//
// # Imports
//
// net imports virtio, virtio/queue, mem, the standard library and
// golang.org/x/sys/unix. It must not import net/tap (vmm plugs a TAP in
// as the Backend: *tap.Queue satisfies it), kvm, devices or any
// transport: it runs the same behind virtio-mmio, virtio-pci,
// vhost-user and in tests.
package netdev
