// Package tap is the host side of Flint's virtio-net device: a Linux TAP
// interface opened through /dev/net/tun with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR
// and a 12-byte virtio-net header (struct virtio_net_hdr_v1, the VERSION_1
// layout with num_buffers, little-endian) in front of every frame.
//
// # Opening
//
// Open attaches to or creates an interface according to Options.Mode:
// OpenExisting requires the interface to exist already (an administrator
// created it, e.g. `ip tuntap add dev tap0 mode tap vnet_hdr`), OpenOrCreate
// attaches or creates, CreateNew creates and fails with EBUSY if the name is
// taken (IFF_TUN_EXCL). An interface that Open creates is not persistent
// unless Options.Persist is set: the kernel deletes it when its last queue
// file is closed, which includes the Flint process dying. A persistent
// interface (TUNSETPERSIST) outlives the process until SetPersist(false) and
// Close, or `ip link del`. Options.Queues > 1 opens IFF_MULTI_QUEUE with one
// file per queue on the same interface, and loads a BPF steering program
// that Queue.PinToFirst attaches (TUNSETSTEERINGEBPF) to steer every frame
// to the first queue while another is drained and detached
// (Queue.SetEnabled): Linux drops what is queued on a queue it detaches.
//
// Name-based queries (MTU, Flags, Index) go through a control socket that
// Open creates next to the TAP, so they see the interface's network
// namespace even when called later from another thread.
//
// # Data path
//
// A Queue is one TAP file. Readv reads one frame (vnet header first) into
// the caller's buffers, Writev writes one frame; both take [][]byte so the
// buffers can be slices of guest memory (a descriptor chain) without a
// copy, and neither allocates: the iovec array and the netpoller callbacks
// are owned by the Queue and reused. The file is non-blocking and
// registered with the Go netpoller, so a Readv with nothing to read parks
// the goroutine in the poller (no timer, no SIGIO) until a frame arrives,
// the read deadline passes or the Queue is closed. TryReadv and TryWritev
// make exactly one attempt and return unix.EAGAIN instead of parking;
// WaitReadable and WaitWritable park until the file is ready without
// moving data. The data-path calls return bare unix.Errno values (compare
// with ==) or the sentinels os.ErrClosed and os.ErrDeadlineExceeded, never
// allocated errors.
//
// Calls on one direction of a Queue (Readv, TryReadv, WaitReadable) are
// serialised by a mutex, as are the write-side calls; one reader and one
// writer goroutine per Queue run fully in parallel. Close and the
// deadline setters may be called from any goroutine and wake parked calls.
//
// # RX back-pressure (how virtio/netdev is meant to drive a Queue)
//
// The device decides when to read; this package only supplies primitives.
// While the guest has posted RX buffers, the RX goroutine calls Readv with
// those buffers (or TryReadv in a loop and WaitReadable when it returns
// EAGAIN). When the guest has no buffers left, it stops reading the TAP
// and waits for the guest's kick on the RX queue; frames then queue up in
// the TAP's ring in the kernel (txqueuelen frames, 1000 by default; the
// kernel drops what does not fit, which senders see as loss and back off)
// and nothing spins. On the kick it resumes reading. A frame already read
// when the guest turns out to have too little buffer space is the
// device's to keep until buffers arrive or to drop; prefer checking for
// enough buffers before reading. To stop a goroutine parked in Readv or
// WaitReadable without closing the TAP (device reset), call
// SetReadDeadline with a time in the past; the call returns
// os.ErrDeadlineExceeded; SetReadDeadline(time.Time{}) re-arms the Queue.
//
// The kernel fills the first 10 bytes of the header but not num_buffers
// (bytes 10-11): older kernels skip them, newer ones zero them, so the
// device always writes num_buffers itself. A read buffer must hold at
// least vnethdr.Len (12) bytes (the kernel drops the frame and returns EINVAL
// otherwise) and should hold a whole frame: 65562 bytes when a GSO offload
// is on, otherwise MTU+26. A longer frame is silently truncated to the
// buffer (the rest is lost and n equals the buffer size), and the next
// frame's size cannot be learnt in advance (the TAP file answers no
// FIONREAD and, being a character device, has no MSG_PEEK).
//
// # Offloads
//
// SetOffload applies TUNSETOFFLOAD, which controls what the kernel may
// hand to the guest (the RX direction): OffloadsForGuest maps the
// virtio-net features the guest acked (GUEST_CSUM, GUEST_TSO4, ...) to the
// TUN_F_* set. The device calls it at activation and again whenever
// features are renegotiated, and SetOffload(0) on reset. Writes (the TX
// direction) accept any GSO type the kernel knows regardless of
// TUNSETOFFLOAD; SupportedOffloads reporting OffloadUSO4 also means the
// kernel accepts gso_type UDP_L4 on write (both arrived in Linux 6.2).
//
// This package imports neither kvm nor virtio; virtio/netdev declares the
// Backend interface it needs and vmm adapts a *Tap to it.
package tap
