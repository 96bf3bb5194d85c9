// Package vhostuser is the backend (server) side of vhost-user
// (QEMU docs/interop/vhost-user.rst): it serves one virtio.Device over a
// unix socket to one frontend at a time (QEMU, UML's virtio_uml, any
// vhost-user frontend), so that Flint's devices run outside the VMM
// process, e.g. `flint net-backend` behind a user-mode Linux guest.
//
// # What it owns
//
//   - Message framing (conn.go, proto.go): the 12-byte header (version 1,
//     REPLY, NEED_REPLY), a payload whose size is checked against its
//     request before it is read (MaxPayload bounds every read), and up
//     to MaxFDs SCM_RIGHTS descriptors per message, received close-on-exec.
//     Each request must carry exactly the fds it needs; fds the backend
//     does not keep are closed. Call, err and backend-channel fds must
//     be eventfds, anonymous pipes or unix sockets, and kick fds
//     eventfds (fdkind.go): never a file, device or named FIFO the
//     backend would write into or block on.
//   - The session (session.go): features (the device's, plus
//     VHOST_USER_F_PROTOCOL_FEATURES), the protocol features it offers
//     (MQ, REPLY_ACK, BACKEND_REQ, CONFIG), the memory table, the
//     rings' size, addresses, base, kick/call/err fds and enable state,
//     and GET_CONFIG/SET_CONFIG over Device.ReadConfig/WriteConfig.
//   - Guest memory (memtable.go): each SET_MEM_TABLE region is mmap'd
//     MAP_SHARED from its fd (which must be a regular file or memfd at
//     least mmap_offset+size long, so the device can never fault on a
//     short file) into a mem.Memory over guest-physical addresses, for
//     descriptors and buffers, plus a user-address translation for the
//     ring addresses SET_VRING_ADDR carries. Replacing a table first
//     stops the device, then unmaps the old one.
//   - The device lifecycle (rings.go): vhost-user has no status register.
//     A ring is started by SET_VRING_KICK and stopped by GET_VRING_BASE;
//     it is enabled from the start unless PROTOCOL_FEATURES is in the
//     last SET_FEATURES, and then by SET_VRING_ENABLE (QEMU and Debian's
//     UML 6.1 keep the bit and send it; frontends that drop the bit
//     never do).
//     When every ring the frontend programmed is started and enabled, the
//     transport builds one queue.Queue per ring (split: avail index from
//     SET_VRING_BASE, used index read from the ring's used->idx),
//     validates it against memory, calls Device.AckFeatures and
//     Device.Activate. A device that refuses the set (a required queue
//     not there yet) is retried on the next change. Any change to a
//     running ring, the memory table or the features, and a ring started
//     while the device runs without it, quiesces the device
//     (Device.Reset), saves each ring's next avail index and restarts it;
//     GET_VRING_BASE replies with that index. Such a restart is one the
//     guest's driver never sees, so a device that implements
//     virtio.Resumer is restarted with Resume (virtio-net keeps the
//     queue pairs its driver chose with VQ_PAIRS_SET, which UML leaves
//     to the backend) unless, since the device last ran, the frontend
//     did what it does for its guest's reset: GET_VRING_BASE, a ring's
//     SET_VRING_NUM, _BASE or _ADDR (QEMU stops every ring; UML sets
//     each up again when its driver binds), SET_FEATURES with other
//     device features, or RESET_OWNER. A new connection always starts
//     a fresh device (Activate).
//   - Packed rings (VIRTIO_F_RING_PACKED), offered only when the device
//     offers them (net-backend: --packed on; off by default, as UML
//     negotiates them and then breaks them with SET_VRING_BASE 0, wrap
//     counter 0). SET_VRING_ADDR's avail and used addresses are then
//     the driver and device event suppression areas (4 bytes each), and
//     the base is two ring positions: bits 0-14 the next avail slot, bit
//     15 its wrap counter, bits 16-31 the same for used (QEMU sends and
//     expects both; a fresh ring is 0x80008000). A base whose upper 16
//     bits are 0 means used = avail (DPDK-style frontends send the avail
//     half only, for a quiescent ring). A packed ring has no used index
//     in memory, so quiescing saves both positions, and GET_VRING_BASE
//     replies avail | used<<16.
//   - The device's virtio.Interrupt (irq.go): Signal writes 8 bytes to
//     the ring's call fd (an eventfd, or UML's socket) without
//     allocating, locking or blocking (a socket with MSG_DONTWAIT, which
//     the frontend cannot turn off as it can the O_NONBLOCK of the file
//     it shares: see "What a frontend can still do"); SignalConfig sends
//     BACKEND_CONFIG_CHANGE_MSG on the backend channel if the frontend
//     set one up; NeedsReset stops the device, every ring and writes the
//     err fds, until the frontend restarts its rings. Completions an
//     engine left unpublished when its queue broke are published as the
//     ring stops, so GET_VRING_BASE never names a used position the
//     driver did not see.
//   - The Server (server.go): Serve accepts frontends on a listener and
//     serves one at a time, refusing (closing) others meanwhile;
//     ServeConn serves one connected socket. A frontend that sends no
//     request within Config.HandshakeTimeout (10 s) of connecting is
//     dropped, so a silent one cannot lock the next out. Listen creates
//     the socket 0600 (ListenMode: another mode) with no chmod window. A protocol error (wrong
//     sizes, unknown requests, bad memory tables, ring addresses outside
//     the table, wrong fd counts, out-of-range ring indices or sizes)
//     closes that connection with the reason logged at Warn; the device
//     is reset, memory unmapped, fds closed, and the next frontend is
//     served from scratch. Nothing a frontend sends makes it panic.
//
// # What a frontend can still do
//
// The guest memory is the frontend's: it can rewrite rings under the
// device (virtio/queue walks them defensively) and, being the owner of
// the memory file, truncate it after SET_MEM_TABLE, which makes the
// backend's next access to a page past the new end fault (SIGBUS). The
// session's goroutine (which reads the rings when it starts the device)
// and Snapshot run with debug.SetPanicOnFault (memfault.go): such a
// fault ends the session with the reason logged and the backend serves
// the next frontend. A fault on the device's own goroutines (its queue
// engines, while the device runs, and an interrupt gap's timer, which
// re-reads the driver's suppression words) is contained only if the
// device's engine recovers it the same way (virtio.Engine and its
// irqGap do).
//
// A call or err fd that is an eventfd or a pipe is written with write(2),
// non-blocking through the file's O_NONBLOCK, which the session sets but
// the frontend, sharing the open file, can clear again (fcntl). A
// frontend that does so and then fills the file (stops reading its pipe,
// or writes 2^64-2 to its eventfd) makes the next write block: for an
// err fd an ordinary system call, which holds the goroutine stopping the
// device and with it the session's end; for a call fd a raw one, in the
// kernel where the Go runtime cannot stop it either, so the next garbage
// collection waits forever and the backend freezes. No per-call non-blocking write exists for an eventfd
// (pwritev2's RWF_NOWAIT is refused), and the backend's seccomp filter
// allows none for a pipe. Sockets (UML's call fds and backend channel)
// are written with MSG_DONTWAIT, which no file flag overrides. Kicks are
// eventfds, which the engine never reads, whatever their O_NONBLOCK says
// when it binds the kick or later: the session makes each kick's os.File
// while the fd is non-blocking, so the netpoller watches it, and
// virtio's kickReader parks on it and ends at the device's reset
// without a read (a frontend that clears O_NONBLOCK before the device
// starts no longer holds GET_VRING_BASE and the session's end until its
// next kick).
//
// # Imports
//
// vhostuser imports virtio, virtio/queue, virtio/transport (its
// interrupt errors), mem, internal/eventfd, internal/hostfile (the
// socket), the standard library and golang.org/x/sys/unix.
// It must not import kvm, vmm, any device package (the device comes in as
// a virtio.Device) or net/*: the caller plugs the device and its backend
// in. No cgo.
package vhostuser
