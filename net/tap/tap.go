package tap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/vnethdr"
)

// DevicePath is the TUN/TAP clone device.
const DevicePath = "/dev/net/tun"

// MaxQueues is the kernel's limit on queues of a multiqueue TAP
// (MAX_TAP_QUEUES).
const MaxQueues = 256

// Mode says whether Open may create the interface.
type Mode int

const (
	// OpenExisting attaches to an interface that already exists and fails
	// with ENODEV otherwise. It never creates one.
	OpenExisting Mode = iota
	// OpenOrCreate attaches to the interface if it exists and creates it
	// otherwise.
	OpenOrCreate
	// CreateNew creates the interface and fails with EBUSY if one with the
	// name exists already (IFF_TUN_EXCL).
	CreateNew
)

// String returns the mode's name.
func (m Mode) String() string {
	switch m {
	case OpenExisting:
		return "open-existing"
	case OpenOrCreate:
		return "open-or-create"
	case CreateNew:
		return "create-new"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Options configures Open.
type Options struct {
	// Name is the interface name (at most 15 bytes). With OpenOrCreate or
	// CreateNew it may be empty or contain "%d" (e.g. "flint%d") to let the
	// kernel pick a free name; Tap.Name reports the result.
	Name string
	// Mode says whether Open may create the interface; the zero value is
	// OpenExisting.
	Mode Mode
	// Queues is the number of queue files. 0 and 1 open a single-queue TAP;
	// more (up to MaxQueues) open it with IFF_MULTI_QUEUE, which an existing
	// interface must have been created with as well.
	Queues int
	// Persist makes the interface persistent (TUNSETPERSIST): it then
	// outlives its files and the process. When false Open leaves the flag
	// as it was: an interface Open creates is deleted when its last queue
	// file closes, an existing persistent one stays persistent.
	Persist bool
}

// Tap is an open TAP interface: one or more queue files on the same
// interface, plus a control socket for name-based queries. Its methods are
// safe for concurrent use; the data path lives on Queue.
type Tap struct {
	name      string
	queues    []*Queue
	supported Offload

	mu      sync.Mutex // guards offload, ctl and closed
	offload Offload
	ctl     int // AF_INET datagram socket in the TAP's namespace, for SIOC* ioctls
	closed  bool

	steer *steering // multiqueue only: the program PinToFirst attaches
}

// Open opens (and, as opts.Mode allows, creates) the TAP interface
// opts.Name with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, sets the vnet header size
// to vnethdr.Len (little-endian, VERSION_1 layout), probes the supported
// offloads and leaves offloads off (SetOffload turns them on). The
// interface is resolved and created in the network namespace of the
// calling OS thread. On error nothing stays open.
func Open(opts Options) (*Tap, error) {
	nq := opts.Queues
	if nq == 0 {
		nq = 1
	}
	if nq < 0 || nq > MaxQueues {
		return nil, fmt.Errorf("tap: %d queues: want 1..%d", opts.Queues, MaxQueues)
	}
	if len(opts.Name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tap: interface name %q longer than %d bytes", opts.Name, unix.IFNAMSIZ-1)
	}
	if opts.Mode == OpenExisting && opts.Name == "" {
		return nil, errors.New("tap: OpenExisting needs an interface name")
	}
	ctl, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tap: control socket: %w", os.NewSyscallError("socket", err))
	}
	t := &Tap{ctl: ctl}
	if err := t.open(opts, nq); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func (t *Tap) open(opts Options, nq int) error {
	switch opts.Mode {
	case OpenExisting:
		if _, err := t.ifreqGet(opts.Name, unix.SIOCGIFINDEX); err != nil {
			return fmt.Errorf("tap: interface %q: %w", opts.Name, err)
		}
	case OpenOrCreate, CreateNew:
	default:
		return fmt.Errorf("tap: unknown mode %v", opts.Mode)
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if nq > 1 {
		flags |= unix.IFF_MULTI_QUEUE
		// Loaded now, while the process may still load programs; a
		// failure only leaves PinToFirst unavailable.
		t.steer = &steering{}
		t.steer.load()
	}
	name := opts.Name
	for i := range nq {
		fl := flags
		if i == 0 && opts.Mode == CreateNew {
			fl |= unix.IFF_TUN_EXCL
		}
		fd, got, err := attach(name, fl, i == 0 && nq > 1)
		if err != nil {
			return fmt.Errorf("tap %q: queue %d: %w", name, i, t.explainAttach(name, fl, err))
		}
		name = got // later queues attach to the name the kernel chose
		if i == 0 {
			if nq > 1 {
				clearStalePin(fd)
			}
			if err := configure(fd); err != nil {
				unix.Close(fd)
				return fmt.Errorf("tap %q: %w", name, err)
			}
			t.supported = probeOffloads(fd)
		}
		q, err := newQueue(fd, name, i)
		if err != nil {
			return fmt.Errorf("tap %q: queue %d: %w", name, i, err)
		}
		q.steer = t.steer
		t.queues = append(t.queues, q)
	}
	t.name = name
	if opts.Persist {
		if err := t.SetPersist(true); err != nil {
			return err
		}
	}
	return nil
}

// attach opens /dev/net/tun and attaches it to name with flags, returning
// the descriptor and the interface name the kernel reports.
func attach(name string, flags uint16, checkMQ bool) (int, string, error) {
	fd, err := unix.Open(DevicePath, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, "", os.NewSyscallError("open "+DevicePath, err)
	}
	if checkMQ {
		feat, err := unix.IoctlGetUint32(fd, unix.TUNGETFEATURES)
		if err == nil && feat&unix.IFF_MULTI_QUEUE == 0 {
			unix.Close(fd)
			return -1, "", errors.New("kernel TAP driver lacks IFF_MULTI_QUEUE")
		}
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, "", err
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, "", os.NewSyscallError("ioctl TUNSETIFF", err)
	}
	return fd, ifr.Name(), nil
}

// configure sets the per-interface vnet header state: 12-byte header,
// little-endian, offloads off.
func configure(fd int) error {
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, vnethdr.Len); err != nil {
		return os.NewSyscallError("ioctl TUNSETVNETHDRSZ", err)
	}
	if sz, err := unix.IoctlGetInt(fd, unix.TUNGETVNETHDRSZ); err != nil || sz != vnethdr.Len {
		if err == nil {
			err = fmt.Errorf("vnet header size is %d, want %d", sz, vnethdr.Len)
		}
		return os.NewSyscallError("ioctl TUNGETVNETHDRSZ", err)
	}
	// VERSION_1 headers are little-endian on every host. On little-endian
	// hosts that is already the kernel's default, so a kernel without the
	// ioctl is only a problem on big-endian ones.
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETLE, 1); err != nil && !hostLittleEndian {
		return os.NewSyscallError("ioctl TUNSETVNETLE", err)
	}
	return nil
}

// Name is the interface name, as the kernel reported it at Open.
func (t *Tap) Name() string { return t.name }

// Queues returns the queue files, index i being queue i. The slice is the
// Tap's own: do not modify it.
func (t *Tap) Queues() []*Queue { return t.queues }

// Queue returns queue i; it panics if i is out of range.
func (t *Tap) Queue(i int) *Queue { return t.queues[i] }

// NumQueues is the number of queue files.
func (t *Tap) NumQueues() int { return len(t.queues) }

// Close closes every queue file and the control socket. Goroutines parked
// in Readv, Writev or the Wait calls return os.ErrClosed. A non-persistent
// interface disappears from the system when its last file closes. Close is
// idempotent; it returns the first error.
func (t *Tap) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	ctl := t.ctl
	t.ctl = -1
	t.mu.Unlock()
	var first error
	for _, q := range t.queues {
		if err := q.Close(); err != nil && first == nil {
			first = err
		}
	}
	if t.steer != nil {
		t.steer.close()
	}
	if ctl >= 0 {
		if err := unix.Close(ctl); err != nil && first == nil {
			first = os.NewSyscallError("close", err)
		}
	}
	return first
}

// SetPersist sets or clears the interface's persistent flag (TUNSETPERSIST).
// To delete a persistent interface, SetPersist(false) and Close.
func (t *Tap) SetPersist(persist bool) error {
	v := 0
	if persist {
		v = 1
	}
	return t.queues[0].control("ioctl TUNSETPERSIST", func(fd int) error {
		return unix.IoctlSetInt(fd, unix.TUNSETPERSIST, v)
	})
}

// VnetHdrLen reports the vnet header size the kernel uses for this
// interface (TUNGETVNETHDRSZ); Open set it to vnethdr.Len.
func (t *Tap) VnetHdrLen() (int, error) {
	var sz int
	err := t.queues[0].control("ioctl TUNGETVNETHDRSZ", func(fd int) (err error) {
		sz, err = unix.IoctlGetInt(fd, unix.TUNGETVNETHDRSZ)
		return err
	})
	return sz, err
}

// IfFlags reports the interface flags the kernel keeps for the TAP file
// (TUNGETIFF): IFF_TAP, IFF_NO_PI, IFF_VNET_HDR, IFF_MULTI_QUEUE,
// IFF_PERSIST... (the TUN flag set, not SIOCGIFFLAGS; see Flags).
func (t *Tap) IfFlags() (uint16, error) {
	var flags uint16
	err := t.queues[0].control("ioctl TUNGETIFF", func(fd int) error {
		ifr, err := unix.NewIfreq("")
		if err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
			return err
		}
		flags = ifr.Uint16()
		return nil
	})
	return flags, err
}

// HardwareAddr returns the interface's MAC address (the host side of the
// link, not the guest's), read through the TAP file (SIOCGIFHWADDR).
func (t *Tap) HardwareAddr() (net.HardwareAddr, error) {
	var mac [6]byte
	err := t.queues[0].control("ioctl SIOCGIFHWADDR", func(fd int) error {
		return getHWAddr(fd, &mac)
	})
	if err != nil {
		return nil, err
	}
	return net.HardwareAddr(mac[:]), nil
}

// MTU returns the interface MTU (SIOCGIFMTU).
func (t *Tap) MTU() (int, error) {
	v, err := t.ifreqGet(t.name, unix.SIOCGIFMTU)
	return int(v), err
}

// SetMTU sets the interface MTU (SIOCSIFMTU).
func (t *Tap) SetMTU(mtu int) error {
	if mtu <= 0 {
		return fmt.Errorf("tap %q: MTU %d", t.name, mtu)
	}
	return t.ifreqSet(unix.SIOCSIFMTU, func(ifr *unix.Ifreq) { ifr.SetUint32(uint32(mtu)) })
}

// Flags returns the interface flags (SIOCGIFFLAGS): unix.IFF_UP,
// unix.IFF_RUNNING and so on.
func (t *Tap) Flags() (uint16, error) {
	v, err := t.ifreqGet(t.name, unix.SIOCGIFFLAGS)
	return uint16(v), err
}

// SetUp brings the interface up or down (SIOCSIFFLAGS). The kernel neither
// sends frames to a TAP that is down nor accepts writes to it.
func (t *Tap) SetUp(up bool) error {
	flags, err := t.Flags()
	if err != nil {
		return err
	}
	if up {
		flags |= unix.IFF_UP
	} else {
		flags &^= unix.IFF_UP
	}
	return t.ifreqSet(unix.SIOCSIFFLAGS, func(ifr *unix.Ifreq) { ifr.SetUint16(flags) })
}

// Index returns the interface index (SIOCGIFINDEX).
func (t *Tap) Index() (int, error) {
	v, err := t.ifreqGet(t.name, unix.SIOCGIFINDEX)
	return int(v), err
}

// CloseControl closes the AF_INET datagram socket the SIOC* calls (MTU,
// SetMTU, Flags, SetUp, Index) go through; they fail with os.ErrClosed
// after it. A VMM calls it once the interface is set up: a sandboxed
// process that kept the socket could still exchange UDP with the host's
// network through it (sendto and recvfrom are on its allowlist for its
// unix sockets). The queues are not affected. Idempotent.
func (t *Tap) CloseControl() error {
	t.mu.Lock()
	ctl := t.ctl
	t.ctl = -1
	t.mu.Unlock()
	if ctl < 0 {
		return nil
	}
	if err := unix.Close(ctl); err != nil {
		return os.NewSyscallError("close", err)
	}
	return nil
}

// ifreqGet runs a SIOCGIF* ioctl for name on the control socket and
// returns the union as a uint32 (flags callers truncate it to 16 bits).
func (t *Tap) ifreqGet(name string, req uint) (uint32, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctl < 0 {
		return 0, os.ErrClosed
	}
	if err := unix.IoctlIfreq(t.ctl, req, ifr); err != nil {
		return 0, os.NewSyscallError(ioctlName(req), err)
	}
	if req == unix.SIOCGIFFLAGS {
		return uint32(ifr.Uint16()), nil
	}
	return ifr.Uint32(), nil
}

// ifreqSet runs a SIOCSIF* ioctl for the TAP on the control socket.
func (t *Tap) ifreqSet(req uint, set func(*unix.Ifreq)) error {
	ifr, err := unix.NewIfreq(t.name)
	if err != nil {
		return err
	}
	set(ifr)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctl < 0 {
		return os.ErrClosed
	}
	if err := unix.IoctlIfreq(t.ctl, req, ifr); err != nil {
		return fmt.Errorf("tap %q: %w", t.name, os.NewSyscallError(ioctlName(req), err))
	}
	return nil
}

func ioctlName(req uint) string {
	switch req {
	case unix.SIOCGIFINDEX:
		return "ioctl SIOCGIFINDEX"
	case unix.SIOCGIFMTU:
		return "ioctl SIOCGIFMTU"
	case unix.SIOCSIFMTU:
		return "ioctl SIOCSIFMTU"
	case unix.SIOCGIFFLAGS:
		return "ioctl SIOCGIFFLAGS"
	case unix.SIOCSIFFLAGS:
		return "ioctl SIOCSIFFLAGS"
	}
	return fmt.Sprintf("ioctl %#x", req)
}

// hostLittleEndian reports the host byte order (for TUNSETVNETLE). The vnet
// header itself is internal/vnethdr, shared with the virtio-net device.
var hostLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1
