package fs

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/mem"
	"github.com/flintvm/flint/virtio"
)

// Queues and geometry.
const (
	// HiprioQueue carries FORGET and INTERRUPT (no replies).
	HiprioQueue = 0
	// RequestQueue is the one request queue.
	RequestQueue = 1
	// TagLen is the configuration space's tag field (not NUL-terminated
	// when all 36 bytes are used).
	TagLen = 36
	// ConfigSize is tag[36] plus num_request_queues (le32).
	ConfigSize = TagLen + 4
	// QueueSize is the request queue's largest size; the hiprio queue
	// takes hiprioSize.
	QueueSize  = 1024
	hiprioSize = 256
	// MaxPages is the largest READ or WRITE in pages (the kernel's own
	// limit, FUSE_MAX_MAX_PAGES): 1 MiB.
	MaxPages = 256
	// MaxWrite is the largest WRITE payload the device accepts.
	MaxWrite = MaxPages * 4096
)

// DefaultMaxOpenFiles is Config.MaxOpenFiles' ceiling when it is 0: an
// eighth of the process's file limit (so that several shares together
// leave the VMM most of its descriptors), at most this many.
const DefaultMaxOpenFiles = 1 << 18

// Config configures a Device.
type Config struct {
	// Tag is what the guest mounts (`mount -t virtiofs TAG DIR`): 1 to 36
	// bytes.
	Tag string
	// Root is the host directory served; the guest never reaches a host
	// path outside it.
	Root string
	// ReadOnly refuses every change (EROFS) and opens files read-only.
	ReadOnly bool
	// Log receives the device's rare messages (nil: discarded).
	Log *slog.Logger
	// MaxOpenFiles caps the host descriptors the device holds for the
	// guest (looked-up inodes plus open files and directories); past it
	// LOOKUP and OPEN answer ENFILE. 0 means an eighth of RLIMIT_NOFILE's
	// soft limit (which New first raises to fs.nr_open when the process
	// is privileged), at most DefaultMaxOpenFiles. A VMM with more than a
	// few shares should split a budget between them explicitly.
	MaxOpenFiles int
	// CacheTimeout is how long the guest may cache names, negative
	// lookups and attributes before asking again, so how late it sees a
	// change made on the host. 0 means DefaultCacheTimeout (1 s); a share
	// the host does not change during the run may use longer.
	CacheTimeout time.Duration
}

// Device is a virtio-fs device serving one host directory. It implements
// virtio.Device. Create it with New; Close it after the VM is done.
type Device struct {
	// FeatureSet: Features (the common ring features, no NOTIFICATION
	// queue), AckFeatures (any subset) and Negotiated.
	virtio.FeatureSet

	tag      [TagLen]byte
	root     string
	readOnly bool
	log      *slog.Logger
	maxFiles int
	umask    uint32
	// cacheTimeout is Config.CacheTimeout (or its default).
	cacheTimeout time.Duration
	sizes        []uint16

	// fs state, guarded by mu: both queues' goroutines take it for each
	// request, so a FORGET never closes a descriptor a request is using.
	mu      sync.Mutex
	rootFd  int // O_PATH descriptor of Root
	procFd  int // O_PATH descriptor of /proc/self/fd, to reopen nodes
	rootDev uint64
	nodes   nodeTable
	handles handleTable
	inited  bool
	minor   uint32
	// warnedFull: the descriptor limit was logged in this activation.
	warnedFull bool

	// engines: the hiprio and request queues' lanes; its lock
	// serializes the transport's calls and Close.
	engines virtio.Engines

	req    requests // the request queue's engine and buffers
	hiprio hiprio   // the hiprio queue's engine
	stats  virtio.Tally[Stats, counter]
}

var _ virtio.Device = (*Device)(nil)

// New opens cfg.Root (a directory, as an O_PATH descriptor held until
// Close) and returns a device serving it under cfg.Tag. Errors name the
// problem.
func New(cfg Config) (*Device, error) {
	if len(cfg.Tag) == 0 || len(cfg.Tag) > TagLen {
		return nil, fmt.Errorf("virtio-fs: tag %q must be 1 to %d bytes", cfg.Tag, TagLen)
	}
	if cfg.CacheTimeout < 0 {
		return nil, fmt.Errorf("virtio-fs: CacheTimeout %v is negative", cfg.CacheTimeout)
	}
	if cfg.MaxOpenFiles < 0 {
		return nil, fmt.Errorf("virtio-fs: MaxOpenFiles %d is negative", cfg.MaxOpenFiles)
	}
	fd, err := unix.Openat2(unix.AT_FDCWD, cfg.Root, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC})
	if err != nil {
		if err == unix.ENOTDIR {
			return nil, fmt.Errorf("virtio-fs: share %s: not a directory", cfg.Root)
		}
		return nil, fmt.Errorf("virtio-fs: share %s: %w", cfg.Root, err)
	}
	var st unix.Stat_t
	var sfs unix.Statfs_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("virtio-fs: share %s: %w", cfg.Root, err)
	}
	if err := unix.Fstatfs(fd, &sfs); err != nil || pseudoFS(sfs.Type) {
		unix.Close(fd)
		return nil, fmt.Errorf("virtio-fs: share %s: a kernel pseudo file system (or unreadable: %v) cannot be shared", cfg.Root, err)
	}
	proc, err := unix.Openat2(unix.AT_FDCWD, "/proc/self/fd", &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC})
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("virtio-fs: /proc/self/fd (needed to reopen shared files): %w", err)
	}
	d := &Device{root: cfg.Root, readOnly: cfg.ReadOnly, log: cfg.Log, maxFiles: cfg.MaxOpenFiles,
		umask: processUmask(), sizes: []uint16{hiprioSize, QueueSize}, rootFd: fd, procFd: proc, rootDev: st.Dev}
	if d.cacheTimeout = cfg.CacheTimeout; d.cacheTimeout == 0 {
		d.cacheTimeout = DefaultCacheTimeout
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.maxFiles == 0 {
		raiseFileLimit()
		d.maxFiles = defaultMaxFiles()
	}
	copy(d.tag[:], cfg.Tag)
	d.OfferFeatures("virtio-fs", virtio.CommonFeatures)
	d.hiprio.d, d.req.d = d, d
	d.engines.Init("virtio-fs", 2, &d.FeatureSet,
		virtio.Lane{Engine: &d.hiprio.eng, Handler: &d.hiprio, Queue: HiprioQueue, Name: "hiprio", Batch: batch},
		virtio.Lane{Engine: &d.req.eng, Handler: &d.req, Queue: RequestQueue, Name: "requests", Batch: batch})
	// The engine's events the device counts:
	d.stats.Init(names[:], map[virtio.Event]counter{virtio.EventMalformed: cMalformed, virtio.EventInterrupt: cInterrupts,
		virtio.EventBroken: cBroken})
	d.nodes.init(&node{id: rootID, fd: fd, key: devIno{st.Dev, st.Ino}, mode: unix.S_IFDIR, lookup: 1})
	d.req.alloc()
	return d, nil
}

// raiseFileLimit lifts RLIMIT_NOFILE to fs.nr_open when the process may
// (CAP_SYS_RESOURCE), as virtiofsd does: every node the guest holds is a
// host descriptor, and a guest's dentry cache keeps thousands. Best
// effort, at setup (before the seccomp filter); it never lowers a limit.
func raiseFileLimit() {
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) != nil {
		return
	}
	b, err := os.ReadFile("/proc/sys/fs/nr_open")
	if err != nil {
		return
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= rl.Max {
		return
	}
	unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: n, Max: n}) // EPERM unprivileged: keep the limit
}

// defaultMaxFiles is an eighth of RLIMIT_NOFILE's soft limit (the Go
// runtime raises it to the hard limit at start), within [64,
// DefaultMaxOpenFiles].
func defaultMaxFiles() int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 1024
	}
	return int(max(64, min(rl.Cur/8, DefaultMaxOpenFiles)))
}

// Tag is the tag the guest mounts.
func (d *Device) Tag() string {
	n := 0
	for n < TagLen && d.tag[n] != 0 {
		n++
	}
	return string(d.tag[:n])
}

// Root is the shared host directory.
func (d *Device) Root() string { return d.root }

// ReadOnly reports whether the share refuses changes.
func (d *Device) ReadOnly() bool { return d.readOnly }

// Type is virtio.DeviceFS.
func (d *Device) Type() virtio.DeviceID { return virtio.DeviceFS }

// QueueMaxSizes is the hiprio queue and one request queue.
func (d *Device) QueueMaxSizes() []uint16 { return d.sizes }

// ConfigSize is ConfigSize.
func (d *Device) ConfigSize() int { return ConfigSize }

// ReadConfig reads the tag and num_request_queues (1).
func (d *Device) ReadConfig(offset uint64, p []byte) {
	var c [ConfigSize]byte
	copy(c[:], d.tag[:])
	put32(c[:], TagLen, 1)
	virtio.CopyConfig(p, offset, c[:])
}

// WriteConfig ignores the write: nothing is writable.
func (d *Device) WriteConfig(offset uint64, p []byte) {}

// Activate starts both queues' engines. Both queues must be enabled.
func (d *Device) Activate(m *mem.Memory, queues []virtio.Queue, irq virtio.Interrupt) error {
	return d.engines.Activate(queues, irq)
}

// Reset stops both engines and waits for them (a request in progress
// completes first), forgets the negotiated features and closes every
// descriptor the guest's nodeids and handles held: a new driver starts
// again with INIT and the root.
func (d *Device) Reset() {
	d.engines.Reset(nil)
	d.mu.Lock()
	d.forgetAll()
	d.mu.Unlock()
}

// forgetAll drops the guest's state (under mu).
func (d *Device) forgetAll() {
	d.nodes.clear()
	d.handles.clear()
	d.inited = false
	d.minor = 0
	d.warnedFull = false
}

// Close resets the device and closes Root's descriptor. Call it once the
// guest can no longer reach the device; it cannot be activated again.
func (d *Device) Close() error {
	d.engines.Lock()
	defer d.engines.Unlock()
	d.engines.Stop(nil)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.forgetAll()
	if !d.engines.Close() {
		return nil
	}
	unix.Close(d.procFd)
	return unix.Close(d.rootFd)
}

var _ virtio.EngineReporter = (*Device)(nil)

// EngineStates reports what the two engines are doing ("hiprio",
// "requests"), for debug dumps. It takes no lock.
func (d *Device) EngineStates() []virtio.EngineState { return d.engines.States() }

// OpenFiles is the number of host descriptors the guest holds now
// (nodes other than the root, and open handles).
func (d *Device) OpenFiles() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.openFiles()
}

func (d *Device) openFiles() int { return d.nodes.count() + d.handles.open }
