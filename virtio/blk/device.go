package blk

import (
	"encoding/binary"
	"fmt"
	"github.com/flintvm/flint/internal/hostfile"
	"os"
	"sync"
	"sync/atomic"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/ratelimit"
	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/queue"
)

// Device-specific feature bits (virtio 1.2 §5.2.3).
const (
	FeatureSizeMax     virtio.Feature = 1  // size_max: largest segment
	FeatureSegMax      virtio.Feature = 2  // seg_max: most data segments per request
	FeatureGeometry    virtio.Feature = 4  // legacy disk geometry
	FeatureRO          virtio.Feature = 5  // the device is read-only
	FeatureBlkSize     virtio.Feature = 6  // blk_size: logical block size
	FeatureFlush       virtio.Feature = 9  // FLUSH requests (a volatile write cache)
	FeatureTopology    virtio.Feature = 10 // physical block topology
	FeatureConfigWCE   virtio.Feature = 11 // writeback field in the config space
	FeatureMQ          virtio.Feature = 12 // several request queues
	FeatureDiscard     virtio.Feature = 13 // DISCARD requests
	FeatureWriteZeroes virtio.Feature = 14 // WRITE_ZEROES requests
)

// SupportedFeatures are the bits Options.Features may hold: the common
// ring features, the packed ring, SEG_MAX, BLK_SIZE, RO and FLUSH.
const SupportedFeatures = virtio.CommonFeatures | 1<<virtio.FeatureRingPacked |
	1<<FeatureSegMax | 1<<FeatureBlkSize | 1<<FeatureRO | 1<<FeatureFlush

// DefaultFeatures are offered when Options.Features is 0 (RO and FLUSH are
// then added as ReadOnly and Writeback say).
const DefaultFeatures = virtio.CommonFeatures | 1<<FeatureSegMax | 1<<FeatureBlkSize

// Geometry of the device.
const (
	// SectorSize is the unit of capacity and of the request header's
	// sector field, whatever blk_size says.
	SectorSize = 512
	// IDBytes is the length of a GET_ID answer (VIRTIO_BLK_ID_BYTES).
	IDBytes = 20
	// ConfigSize is the configuration space the device exposes: capacity
	// up to and including num_queues (virtio_blk_config offsets 0-35).
	ConfigSize = 36
	// DefaultQueueSize is the request queue's size when Options.QueueSize
	// is 0.
	DefaultQueueSize = 256
)

// Options configure a Device.
type Options struct {
	// ID is the drive's serial number, answered to GET_ID (at most
	// IDBytes bytes; empty answers zeros).
	ID string
	// ReadOnly opens the image read-only and offers VIRTIO_BLK_F_RO;
	// writes are answered IOERR.
	ReadOnly bool
	// Writeback offers VIRTIO_BLK_F_FLUSH and makes FLUSH an fdatasync of
	// the image (Firecracker's cache_type "Writeback"); a driver that
	// does not negotiate FLUSH gets each write synced before it
	// completes. Without it ("Unsafe") FLUSH is not offered and a flush
	// request is a no-op.
	Writeback bool
	// Features are the features offered; 0 means DefaultFeatures. Clear
	// ring feature bits to switch them off. Bits outside
	// SupportedFeatures make Open fail. FeatureRO and FeatureFlush are
	// set from ReadOnly and Writeback, whatever Features says.
	Features uint64
	// Packed adds VIRTIO_F_RING_PACKED to the offer (the drive's
	// "packed": true). Off by default: Linux negotiates the packed ring
	// whenever it is offered.
	Packed bool
	// QueueSize is the request queue's largest size (a power of two up
	// to queue.MaxSize); 0 means DefaultQueueSize.
	QueueSize uint16
	// Limiter, when set, rate-limits requests: one op each, and IN/OUT
	// data bytes as bandwidth. Nil limits nothing.
	Limiter *ratelimit.Limiter
}

// Device is a virtio-blk device over a raw image file. It implements
// virtio.Device. Create it with Open; Close it after the VM is done.
type Device struct {
	// FeatureSet: Features, AckFeatures (any subset of the offered
	// features: virtio-blk has no dependencies between them) and
	// Negotiated (0 after Reset).
	virtio.FeatureSet

	file     *os.File
	fd       int
	capacity uint64 // in sectors
	readOnly bool
	flush    bool
	id       [IDBytes]byte
	segMax   uint32
	maxSizes []uint16
	limiter  *ratelimit.Limiter

	// engines: the request queue's lane; its lock serializes the
	// transport's calls, Close and the image's replacement.
	engines virtio.Engines
	// io is held by the request engine while it serves a request and by
	// ReplaceImage while it syncs and swaps the image: no request runs
	// meanwhile. It guards the engine's sync state (failed, owed).
	io sync.Mutex
	// replacing is set while ReplaceImage waits for io: a large transfer
	// gives up (IOERR) at its next chunk instead of holding it.
	replacing atomic.Bool

	eng   engine // reused across activations: its buffers stay warm
	stats virtio.Tally[Stats, counter]
}

var _ virtio.Device = (*Device)(nil)

// Open opens the raw image at path (O_RDWR, or O_RDONLY with
// opts.ReadOnly) and returns a device over it. The image's size must be
// a multiple of SectorSize; its capacity is size/512 sectors. Errors name
// the problem (the path, the size, the option).
func Open(path string, opts Options) (*Device, error) {
	if len(opts.ID) > IDBytes {
		return nil, fmt.Errorf("virtio-blk: drive ID %q is longer than %d bytes", opts.ID, IDBytes)
	}
	f := opts.Features
	if f == 0 {
		f = DefaultFeatures
	}
	f = virtio.WithRingPacked(f|virtio.FeatureVersion1.Mask(), opts.Packed)
	if extra := f &^ SupportedFeatures; extra != 0 {
		return nil, fmt.Errorf("virtio-blk: features %#x are not supported", extra)
	}
	f &^= FeatureRO.Mask() | FeatureFlush.Mask()
	if opts.ReadOnly {
		f |= FeatureRO.Mask()
	}
	if opts.Writeback {
		f |= FeatureFlush.Mask()
	}
	qs, err := virtio.QueueSize("virtio-blk", opts.QueueSize, DefaultQueueSize)
	if err != nil {
		return nil, err
	}
	flag := os.O_RDWR
	if opts.ReadOnly {
		flag = os.O_RDONLY
	}
	// Checked as a regular file before anything is read: a FIFO named as an
	// image is an error at once, not a hang (internal/hostfile).
	file, err := hostfile.OpenInput(path, flag, hostfile.Regular)
	if err != nil {
		return nil, fmt.Errorf("virtio-blk: %w", err)
	}
	st, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("virtio-blk: %w", err)
	}
	size := st.Size()
	if !st.Mode().IsRegular() || size%SectorSize != 0 {
		file.Close()
		return nil, fmt.Errorf("virtio-blk: %s: not a regular file whose size (%d bytes) is a multiple of %d", path, size, SectorSize)
	}
	d := &Device{file: file, fd: int(file.Fd()), capacity: uint64(size) / SectorSize, readOnly: opts.ReadOnly,
		flush: opts.Writeback, limiter: opts.Limiter, maxSizes: []uint16{qs},
		// Two descriptors of a request carry the header and the status.
		segMax: uint32(min(int(qs), queue.DefaultMaxSegments) - 2)}
	d.OfferFeatures("virtio-blk", f)
	copy(d.id[:], opts.ID)
	d.eng.alloc(d)
	d.engines.Init("virtio-blk", 1, &d.FeatureSet, virtio.Lane{Engine: &d.eng.eng, Handler: &d.eng, Name: "requests", Batch: batch})
	// The engine's events the device counts:
	d.stats.Init(names[:], map[virtio.Event]counter{virtio.EventMalformed: cMalformed, virtio.EventInterrupt: cInterrupts,
		virtio.EventThrottled: cThrottled, virtio.EventBroken: cBroken})
	return d, nil
}

// Capacity is the drive's size in 512-byte sectors.
func (d *Device) Capacity() uint64 { return d.capacity }

// ReadOnly reports whether the drive refuses writes.
func (d *Device) ReadOnly() bool { return d.readOnly }

// Limiter is the rate limiter given in Options (nil if none).
func (d *Device) Limiter() *ratelimit.Limiter { return d.limiter }

// Type is virtio.DeviceBlock.
func (d *Device) Type() virtio.DeviceID { return virtio.DeviceBlock }

// QueueMaxSizes is one request queue of Options.QueueSize.
func (d *Device) QueueMaxSizes() []uint16 { return d.maxSizes }

// ConfigSize is ConfigSize.
func (d *Device) ConfigSize() int { return ConfigSize }

// ReadConfig reads the configuration space: capacity, seg_max, blk_size
// (512) and num_queues (1); size_max, geometry, topology and writeback
// read as zero.
func (d *Device) ReadConfig(offset uint64, p []byte) {
	var c [ConfigSize]byte
	binary.LittleEndian.PutUint64(c[0:], d.capacity)
	binary.LittleEndian.PutUint32(c[12:], d.segMax)
	binary.LittleEndian.PutUint32(c[20:], SectorSize)
	binary.LittleEndian.PutUint16(c[34:], 1)
	virtio.CopyConfig(p, offset, c[:])
}

// WriteConfig ignores the write: without CONFIG_WCE nothing is writable.
func (d *Device) WriteConfig(offset uint64, p []byte) {}

// Activate starts the request queue's goroutine. queues[0] must be
// enabled.
func (d *Device) Activate(m *mem.Memory, queues []virtio.Queue, irq virtio.Interrupt) error {
	return d.engines.Activate(queues, irq)
}

// Reset stops the request goroutine and waits for it (an I/O in progress
// ends after its current system call, of at most 4 MiB: a request not
// done by then is answered IOERR), and forgets the negotiated features.
// Requests the device had not started stay in the ring.
func (d *Device) Reset() { d.engines.Reset(nil) }

// Close resets the device and closes the image. Call it once the guest
// can no longer reach the device (the vCPUs have stopped); the device
// cannot be activated again.
func (d *Device) Close() error {
	d.engines.Lock()
	defer d.engines.Unlock()
	d.engines.Stop(nil)
	if !d.engines.Close() {
		return nil
	}
	return d.file.Close()
}

var _ virtio.EngineReporter = (*Device)(nil)

// EngineStates reports what the request engine is doing ("requests",
// queue 0), with the queue indices at its last transition, for debug
// dumps. It takes no lock: it is safe while the engine is stuck, from any
// goroutine. An engine blocked in the image's I/O shows as running.
func (d *Device) EngineStates() []virtio.EngineState { return d.engines.States() }
