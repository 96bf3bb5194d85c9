// Package console is the virtio-console device (virtio 1.2 §5.3) with a
// single port: one receiveq (queue 0, host -> guest) fed from an
// io.Reader and one transmitq (queue 1, guest -> host) drained into an
// io.Writer. It implements virtio.Device, so it runs behind any Flint
// transport and in tests (virtio/virtiotest); each queue is served by a
// virtio.Engine and the device supplies only the per-chain work.
//
// # One port per device
//
// The device never offers VIRTIO_CONSOLE_F_MULTIPORT (nor SIZE or
// EMERG_WRITE): the driver sees exactly one port (/dev/hvcN in a Linux
// guest, from the stock virtio_console module) and there is no control
// queue. A VM that needs several streams (a command's stdin, stdout and
// stderr apart from kernel messages) gets one device per stream. The
// configuration space (cols, rows, max_nr_ports, emerg_wr: 12 bytes)
// reads as zeros and ignores writes.
//
// # Receive (host -> guest)
//
// A reader goroutine, started at the first activation, reads the
// io.Reader into one bounded buffer (InputBuffer bytes) and wakes the
// receive engine, which copies the buffered bytes into the guest's
// writable buffers in order; the reader reads again only once the engine
// has delivered everything it had. Bytes buffered but not yet delivered
// survive a device reset and go to the next activation. At EOF (or a read
// error, counted) input simply ends: the guest sees no more data. A nil
// reader means no input ever. A blocked Read cannot be interrupted: the
// reader goroutine ends when Read returns after Close.
//
// # Transmit (guest -> host)
//
// Every transmit chain's readable bytes are written to the io.Writer in
// chain order, one Write per guest buffer or per 64 KiB of it (a writer
// that queues what it is given never gets more at once, however large the
// guest's buffer), straight from guest memory (no staging copy). The
// policy for a slow or failing writer:
//
//   - A slow writer is back-pressure: the transmit engine waits in Write
//     and the guest's console writes wait with it, like a slow serial
//     line. The writer must not block forever (a file, os.Stdout, or a
//     pipe the host drains).
//   - A Write error is counted (WriteErrors) and the rest of that chain is
//     dropped (DroppedBytes); the chain completes and the next one is
//     written as usual, so a failing writer never stalls the guest.
//   - Reset unblocks a Write that waits: when the writer has
//     SetWriteDeadline (an *os.File on a pipe or socket), Reset sets a
//     past deadline, so the Write fails and its bytes are dropped. Once
//     a reset begins, what the chain in progress still holds is dropped
//     (counted) instead of written: the reset waits for one Write at
//     most, not for a chain of 4 GiB.
//
// # Bad chains
//
// A transmit chain with device-writable buffers, or a receive chain with
// device-readable ones, is completed with used length 0, untouched, and
// counted (BadChains): the port goes on. Chains the queue rejects
// (addresses outside guest memory, loops) are completed by the queue and
// counted (Malformed). A driver that breaks a ring makes that queue's
// engine ask for DEVICE_NEEDS_RESET; the other queue carries on until the
// reset.
//
// # Imports
//
// console imports virtio, virtio/queue, mem and the standard library. It
// must not import kvm, vmm, devices or any transport. It has no unsafe
// code.
package console
