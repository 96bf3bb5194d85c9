package virtio

import (
	"os"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio/queue"
)

// Device is a virtio device as its transport sees it. Methods other than
// Activate and Reset are called from the transport's goroutine (a vCPU
// exit, the vhost-user socket) and must be cheap; the device does its I/O
// on its own goroutines between Activate and Reset.
//
// A device never knows its transport: everything transport-specific
// (registers, capability layout, vhost-user messages, interrupt delivery,
// the status state machine) stays in virtio/transport/*.
type Device interface {
	// Type is the virtio device ID.
	Type() DeviceID

	// Features are the feature bits the device offers: CommonFeatures
	// plus its device-specific bits. They must not change while the
	// driver negotiates (between resets).
	Features() uint64

	// AckFeatures is called when the driver sets FEATURES_OK, with the
	// negotiated features (already checked by Negotiate: a subset of
	// Features that includes VERSION_1). The device checks
	// device-specific dependencies (for net: GUEST_TSO4 needs GUEST_CSUM)
	// and returns an error to refuse the set; the transport then leaves
	// FEATURES_OK clear. The features stay in force until Reset.
	AckFeatures(negotiated uint64) error

	// QueueMaxSizes has one entry per virtqueue the device can use, in
	// queue-index order: the largest size the device accepts for that
	// queue (a power of two up to queue.MaxSize). The transport creates
	// one queue.Queue per entry. The slice must not change.
	QueueMaxSizes() []uint16

	// ConfigSize is the size in bytes of the device-specific
	// configuration space (PCI's device capability length, vhost-user
	// GET_CONFIG bounds).
	ConfigSize() int

	// ReadConfig fills p from the configuration space at offset. Bytes
	// outside [0, ConfigSize()) read as zero. Multi-byte fields are
	// little-endian. The transport provides the config generation
	// counter; it bumps it whenever the device calls
	// Interrupt.SignalConfig.
	ReadConfig(offset uint64, p []byte)

	// WriteConfig stores p into the configuration space at offset. The
	// device ignores writes to read-only fields and out of range.
	WriteConfig(offset uint64, p []byte)

	// Activate starts the device when the driver sets DRIVER_OK (or when
	// vhost-user rings start). queues has one entry per QueueMaxSizes
	// entry; a queue the driver did not enable has a nil Ring. Enabled
	// rings are validated against m and configured with the negotiated
	// features. The device may keep m, the queues and irq until Reset
	// returns, and drives each Ring from one goroutine at a time. An
	// error (for example a required queue not enabled) makes the
	// transport set DEVICE_NEEDS_RESET; the device must then hold no
	// goroutines or references.
	Activate(m *mem.Memory, queues []Queue, irq Interrupt) error

	// Reset stops the device and returns it to its initial state: it
	// stops and waits for its goroutines, forgets the negotiated features
	// and drops m, the queues and irq. After Reset returns the device
	// touches neither guest memory nor the queues, so the transport may
	// reset them. Reset on a device that is not active is a no-op.
	Reset()
}

// Resumer is a Device a transport can restart without its driver
// resetting it. vhost-user's session stops the device (Reset) to change
// the memory table, the features or the set of rings, or after a fault,
// and starts it again while the guest's driver goes on as it was; a
// frontend that stops the rings for the guest's reset (GET_VRING_BASE),
// reprograms them or renegotiates the features makes the next start a
// fresh Activate instead. The PCI and MMIO transports never resume: a
// device they stop has been reset by its driver.
type Resumer interface {
	Device
	// Resume is Activate for such a restart: the same arguments and
	// contract, but the device keeps what the driver set through it
	// since its last fresh activation and that Reset does not undo for
	// this purpose (virtio-net: the queue pairs in use after the
	// driver's VQ_PAIRS_SET, capped at the pairs started), where
	// Activate starts as a new device would.
	Resume(m *mem.Memory, queues []Queue, irq Interrupt) error
}

// Queue is one virtqueue handed to a device at activation.
type Queue struct {
	// Ring is the validated ring, nil if the driver did not enable this
	// queue. The transport keeps ownership: it reads the ring's indices
	// after Reset (vhost-user GET_VRING_BASE) and resets it.
	Ring *queue.Queue

	// Kick becomes readable each time the driver notifies the device
	// about this queue: an eventfd that KVM signals (ioeventfd on the
	// notify register), the vhost-user kick fd, or a pipe in tests. Read
	// it to consume notifications; the bytes read carry no meaning (an
	// eventfd returns an 8-byte counter, a pipe whatever was written).
	// It is non-blocking, so reads through it park the goroutine in the
	// Go poller. The transport owns and closes it, after Reset. Nil if
	// Ring is nil.
	Kick *os.File
}

// Interrupt is how a device notifies its driver. The transport implements
// it and passes it to Device.Activate; the device calls it from any of
// its goroutines, concurrently, so implementations must be safe for
// concurrent use (ISR bits are set with atomic OR, never plain
// read-modify-write). Signal is on the data path: it must not allocate
// and should return a bare errno rather than a wrapped error.
//
// How each transport implements it:
//
//   - virtio-mmio: one interrupt line per device. Signal sets ISR bit 0
//     ("used buffer"), SignalConfig bumps the config generation and sets
//     ISR bit 1; both then raise the line (irqfd write or a callback into
//     the VMM's IRQ chip). The driver acknowledges through
//     InterruptACK, which clears the bits it read.
//   - virtio-pci with MSI-X: Signal(q) sends the vector the driver
//     programmed in queue q's queue_msix_vector, SignalConfig the
//     config_msix_vector; VIRTIO_MSI_NO_VECTOR means no interrupt. With
//     MSI-X disabled: INTx with the ISR bits, as for MMIO.
//   - vhost-user: Signal(q) writes the call fd the frontend gave for
//     ring q (an eventfd, or the write end of a pipe: write 8 bytes);
//     SignalConfig sends VHOST_USER_BACKEND_CONFIG_CHANGE_MSG on the
//     backend channel when negotiated.
type Interrupt interface {
	// Signal sends a used-buffer notification for queue index q (the
	// index in Activate's queues). Call it after queue.Publish when
	// queue.NeedsInterrupt reports true.
	Signal(q int) error

	// SignalConfig sends a configuration-change notification. The device
	// calls it after changing its configuration space (link status,
	// capacity); the transport bumps the config generation first.
	SignalConfig() error

	// NeedsReset reports an error the device cannot recover from (a
	// queue.ErrBroken ring, a dead backend): the transport sets
	// DEVICE_NEEDS_RESET and, if DRIVER_OK is set, sends a
	// configuration-change notification. The device stops using the
	// affected queues and waits for Reset.
	NeedsReset() error
}
