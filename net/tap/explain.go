package tap

// Why TUNSETIFF refused an interface name that exists.

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrWrongDevice marks an Open that failed because an interface of the
// name asked for exists and cannot be attached as asked: it is not a
// TUN/TAP device, it is a TUN (layer 3) device, its multi_queue setting
// differs from the queue count asked for, or another process holds a
// single-queue TAP. That is the caller's choice of name (vmm reports it as
// a usage error); the error's text says which, and what to do.
var ErrWrongDevice = errors.New("the interface cannot be attached as this TAP")

// wrongDevice is an ErrWrongDevice: why, then the system call's error,
// which it wraps (errors.Is finds the errno too).
type wrongDevice struct {
	why string
	err error
}

func (e *wrongDevice) Error() string        { return e.why + ": " + e.err.Error() }
func (e *wrongDevice) Unwrap() error        { return e.err }
func (e *wrongDevice) Is(target error) bool { return target == ErrWrongDevice }

// explainAttach turns TUNSETIFF's error err (EINVAL or EBUSY) for name,
// asked with flags, into an ErrWrongDevice saying why, from the
// interface's ethtool driver information through the Tap's control
// socket (Linux's tun driver reports driver "tun" and bus "tun" or
// "tap"). Any other error, or a name with no interface, comes back as
// it is.
func (t *Tap) explainAttach(name string, flags uint16, err error) error {
	busy := errors.Is(err, unix.EBUSY)
	if name == "" || !busy && !errors.Is(err, unix.EINVAL) {
		return err
	}
	if _, ierr := t.ifreqGet(name, unix.SIOCGIFINDEX); ierr != nil {
		return err
	}
	driver, bus := t.driverInfo(name)
	var why string
	switch {
	case driver != "tun" && driver != "":
		why = fmt.Sprintf("the interface exists and is a %s device, not a TAP (name a new interface, or one made with `ip tuntap add NAME mode tap`)", driver)
	case driver != "tun":
		why = "the interface exists and is not a TAP (name a new interface, or one made with `ip tuntap add NAME mode tap`)"
	case busy && flags&unix.IFF_TUN_EXCL != 0:
		why = "the interface exists already, and a new one was asked for"
	case bus == "tun":
		why = "the interface is a TUN (layer 3) device, not a TAP (`ip tuntap add NAME mode tap` makes one)"
	case busy:
		why = "another process holds this TAP, which has one queue (only a multi_queue TAP can be opened twice)"
	case flags&unix.IFF_MULTI_QUEUE != 0:
		why = "the TAP was made without multi_queue, which more than one queue needs (`ip tuntap add NAME mode tap multi_queue`, or queues=1)"
	default:
		why = "the TAP was made with multi_queue, and one queue was asked for (queues=2 or more, or a TAP without multi_queue)"
	}
	return &wrongDevice{why: why, err: err}
}

// driverInfo is name's ethtool driver and bus, "" when the interface
// reports none (loopback has no driver information).
func (t *Tap) driverInfo(name string) (driver, bus string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctl < 0 {
		return "", ""
	}
	info, err := unix.IoctlGetEthtoolDrvinfo(t.ctl, name)
	if err != nil {
		return "", ""
	}
	return unix.ByteSliceToString(info.Driver[:]), unix.ByteSliceToString(info.Bus_info[:])
}
