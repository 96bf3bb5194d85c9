// Package vsock is the virtio-vsock device (virtio 1.2 §5.10, device ID
// 19) with Firecracker's host side: the guest's AF_VSOCK stream sockets
// reach host processes through unix sockets. It implements
// virtio.Device, so it runs behind any Flint transport and in tests
// (virtio/virtiotest); the rx and tx queues are each served by a
// virtio.Engine (the event queue is accepted and never used: Flint never
// migrates a guest).
//
// # The host side (Firecracker's contract)
//
// Host-initiated: a host process connects to the device's listener (the
// unix socket uds_path, which vmm creates) and writes "CONNECT <port>\n";
// the device asks the guest for a connection to that port from a fresh
// host port and, once the guest accepts, answers "OK <host port>\n" and
// relays bytes both ways. If the guest refuses (RST) or does not answer
// in Options.ConnectTimeout, the unix connection is closed.
// Guest-initiated: a guest connection to CID 2 (the host) port P makes
// the device dial Options.Dial(P) (vmm: the unix socket "<uds_path>_P");
// if nothing answers, the guest gets an RST.
//
// # Flow control
//
// Each open connection has two bounded buffers of Options.BufSize bytes
// (none before the handshake completes). The guest's data goes into the
// first (whose size is the buf_alloc the device advertises) and a
// writer goroutine drains it into the unix socket; fwd_cnt, and so the
// guest's credit, grows only as the socket takes bytes, so a unix peer
// that does not read stops the guest (a guest that sends beyond its
// credit is reset). A reader goroutine reads the unix socket into the
// second buffer only as far as the guest's credit (its buf_alloc and
// fwd_cnt) allows, so a guest that does not read stops the reads.
// Nothing is buffered beyond the two buffers.
//
// # Connection life
//
// REQUEST/RESPONSE open a connection; RW carries data; SHUTDOWN with
// SEND from the guest half-closes the unix socket once its data is
// written, and the unix side's EOF becomes a SHUTDOWN with SEND to the
// guest once its data is delivered; when both directions are closed, or
// the guest shuts down both at once, the device closes the socket and
// sends RST. A unix peer that vanishes (a failed read or write) resets
// the guest's connection; an RST from the guest closes the socket. At
// most Options.MaxConns connections exist at once (one the guest takes
// back while its dial runs keeps its place until the dial returns); a
// REQUEST beyond that is answered with RST.
//
// # Malformed packets
//
// Every transmit packet goes through ParseHeader: a bad length, type,
// CID, operation, flags or port is answered with an RST (never an RST to
// an RST) and, if it names a connection, resets that connection; so do
// packets for connections that do not exist or are not in a state for
// them (a RESPONSE before the device's REQUEST went out, a
// CREDIT_REQUEST before the handshake completed) and data beyond the
// credit.
// Chains with buffers of the wrong direction, or receive buffers too
// small for a header, are completed with used length 0 and counted.
//
// # Imports
//
// vsock imports virtio, virtio/queue, mem and the standard library. It
// must not import kvm, vmm, devices or any transport. It has no unsafe
// code.
package vsock
