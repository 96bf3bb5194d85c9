package console

// The two queues' work: rx fills the guest's receive buffers from the
// input buffer, tx writes the guest's transmit buffers to the writer.
// Each is a virtio.Handler run by its own virtio.Engine.

import (
	"errors"
	"io"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

// batch is how many chains an engine completes before it publishes them
// (and maybe interrupts); it also publishes whenever its ring runs empty
// and before it waits for input.
const batch = 32

// port is what both queues' handlers hold: the device and the engine
// that runs the handler (reused across activations).
type port struct {
	d   *Device
	eng virtio.Engine
}

// Event counts what the engine reports (as New maps it).
func (p *port) Event(e virtio.Event) { p.d.stats.Event(e) }

// rx is the receiveq: host -> guest.
type rx struct{ port }

var _ virtio.Handler = (*rx)(nil)

// Next pops a chain when input is buffered, and otherwise waits for the
// reader (forever after EOF: only the reset ends that wait).
func (r *rx) Next() virtio.Result { return r.d.engines.Poll(r.d.in.pending()) }

// Chain fills one receive buffer chain with as much input as it holds.
func (r *rx) Chain(c *queue.Chain) virtio.Result {
	if c.ReadLen > 0 {
		r.d.stats.Inc(cBadChains) // a device-readable buffer on the receiveq
		return virtio.Result{Do: virtio.Done}
	}
	n := r.d.in.deliver(c.Writable)
	if n > 0 {
		r.d.stats.Inc(cInChains)
		r.d.stats.Add(cInBytes, uint64(n))
	}
	return virtio.Result{Do: virtio.Done, Used: uint32(n)}
}

// Wait blocks until the reader buffered input (or input ended), or the
// reset.
func (r *rx) Wait(virtio.Activity) bool { return r.d.engines.Await(r.d.in.ready) }

// tx is the transmitq: guest -> host. Output comes only with chains, and
// tx never waits for the writer (a slow Write simply takes its time).
type tx struct {
	port
	virtio.ChainsOnly
}

var _ virtio.Handler = (*tx)(nil)

// writeMax is the most bytes of guest memory one Write gets. A guest
// buffer can be as large as the guest's RAM; a writer that holds what it
// is given (command mode's spool takes a whole Write whenever it is
// empty) would copy all of it.
const writeMax = 64 << 10

// errStopped: the engines stop (a reset, Close), so the rest of the chain
// is dropped rather than written. A chain of 1022 descriptors naming the
// same guest memory is 4 GiB of output: the reset would wait for all of
// it to pass through a writer without a deadline.
var errStopped = errors.New("virtio-console: output dropped for a reset")

// Chain writes one chain's readable bytes to the writer in order,
// straight from guest memory, one Write per guest buffer or per writeMax
// bytes of it. A failed or short Write drops the rest of the chain
// (counted); the chain completes either way.
func (t *tx) Chain(c *queue.Chain) virtio.Result {
	if c.WriteLen > 0 {
		t.d.stats.Inc(cBadChains) // a device-writable buffer on the transmitq
		return virtio.Result{Do: virtio.Done}
	}
	if c.ReadLen > 0 {
		t.d.guestWrote()
	}
	written := uint64(0)
	for _, s := range c.Readable {
		n, err := t.write(s)
		written += n
		if err != nil {
			if err != errStopped {
				t.d.stats.Inc(cWriteErrors)
			}
			t.d.stats.Add(cDroppedBytes, uint64(c.ReadLen)-written)
			break
		}
	}
	t.d.stats.Add(cOutBytes, written)
	t.d.stats.Inc(cOutChains)
	return virtio.Result{Do: virtio.Done}
}

// write writes s in Writes of at most writeMax bytes and returns how
// many bytes the writer took, until the first failed or short Write or,
// once the engines stop, errStopped.
func (t *tx) write(s []byte) (uint64, error) {
	done := 0
	for done < len(s) {
		if t.d.engines.Stopping() {
			return uint64(done), errStopped
		}
		p := s[done:min(len(s), done+writeMax)]
		n, err := t.d.out.Write(p)
		n = max(0, min(n, len(p))) // a Writer that lies about n
		done += n
		if err == nil && n < len(p) {
			err = io.ErrShortWrite
		}
		if err != nil {
			return uint64(done), err
		}
	}
	return uint64(done), nil
}
