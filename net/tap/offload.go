package tap

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Offload is a set of TUN_F_* offload flags (TUNSETOFFLOAD): the kinds of
// partially checksummed or unsegmented (GSO) frames the kernel may hand to
// the reader of the TAP, described by the vnet header in front of them.
type Offload uint32

// The offloads TUNSETOFFLOAD knows. Every one except OffloadCsum needs
// OffloadCsum as well.
const (
	// OffloadCsum: frames may carry a partial checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM).
	OffloadCsum Offload = unix.TUN_F_CSUM
	// OffloadTSO4: TCP over IPv4 segmentation (gso_type TCPV4).
	OffloadTSO4 Offload = unix.TUN_F_TSO4
	// OffloadTSO6: TCP over IPv6 segmentation (gso_type TCPV6).
	OffloadTSO6 Offload = unix.TUN_F_TSO6
	// OffloadTSOECN: TSO frames may have CWR set (gso_type | GSO_ECN);
	// meaningful only with OffloadTSO4 or OffloadTSO6.
	OffloadTSOECN Offload = unix.TUN_F_TSO_ECN
	// OffloadUFO: UDP fragmentation offload. Linux stopped producing UFO
	// frames in 4.14 and accepts the flag as a no-op.
	OffloadUFO Offload = unix.TUN_F_UFO
	// OffloadUSO4: UDP segmentation over IPv4 (gso_type UDP_L4), Linux 6.2
	// and later. The kernel takes USO4 and USO6 only together.
	OffloadUSO4 Offload = unix.TUN_F_USO4
	// OffloadUSO6: UDP segmentation over IPv6; see OffloadUSO4.
	OffloadUSO6 Offload = unix.TUN_F_USO6
)

// offloadAll is every flag this package knows.
const offloadAll = OffloadCsum | OffloadTSO4 | OffloadTSO6 | OffloadTSOECN | OffloadUFO | OffloadUSO4 | OffloadUSO6

const offloadUSO = OffloadUSO4 | OffloadUSO6

var offloadNames = []struct {
	o    Offload
	name string
}{
	{OffloadCsum, "csum"}, {OffloadTSO4, "tso4"}, {OffloadTSO6, "tso6"},
	{OffloadTSOECN, "tso_ecn"}, {OffloadUFO, "ufo"}, {OffloadUSO4, "uso4"},
	{OffloadUSO6, "uso6"},
}

// String lists the flags, e.g. "csum|tso4|tso6", or "none".
func (o Offload) String() string {
	if o == 0 {
		return "none"
	}
	var parts []string
	for _, n := range offloadNames {
		if o&n.o != 0 {
			parts = append(parts, n.name)
			o &^= n.o
		}
	}
	if o != 0 {
		parts = append(parts, "0x"+strconv.FormatUint(uint64(o), 16))
	}
	return strings.Join(parts, "|")
}

// Normalize drops the flags the kernel would refuse or ignore in this
// combination: everything without OffloadCsum, OffloadTSOECN without any
// TSO, and OffloadUSO4 or OffloadUSO6 alone (the kernel takes the pair
// only). Unknown bits are kept, so SetOffload reports them.
func (o Offload) Normalize() Offload {
	if o&OffloadCsum == 0 {
		return o &^ offloadAll
	}
	if o&(OffloadTSO4|OffloadTSO6) == 0 {
		o &^= OffloadTSOECN
	}
	if o&offloadUSO != offloadUSO {
		o &^= offloadUSO
	}
	return o
}

// Virtio-net feature bits (virtio 1.2 §5.1.3) that OffloadsForGuest reads.
// They are spelled out here because net/tap must not import virtio.
const (
	virtioNetGuestCsum = 1
	virtioNetGuestTSO4 = 7
	virtioNetGuestTSO6 = 8
	virtioNetGuestECN  = 9
	virtioNetGuestUFO  = 10
	virtioNetGuestUSO4 = 54
	virtioNetGuestUSO6 = 55
)

// OffloadsForGuest maps the virtio-net features the guest acked (the
// 64-bit feature word, bit n = feature n) to the offloads the TAP may use
// towards it: GUEST_CSUM→OffloadCsum, GUEST_TSO4→OffloadTSO4,
// GUEST_TSO6→OffloadTSO6, GUEST_ECN→OffloadTSOECN, GUEST_UFO→OffloadUFO,
// GUEST_USO4→OffloadUSO4, GUEST_USO6→OffloadUSO6, then Normalize: without
// GUEST_CSUM nothing is offloaded (the spec makes every GUEST_* offload
// depend on it), and a guest acking only one of GUEST_USO4/GUEST_USO6 gets
// neither, because the kernel can only enable both and the guest must
// not receive the kind it did not ack.
func OffloadsForGuest(features uint64) Offload {
	var o Offload
	for _, m := range []struct {
		bit uint
		o   Offload
	}{
		{virtioNetGuestCsum, OffloadCsum}, {virtioNetGuestTSO4, OffloadTSO4},
		{virtioNetGuestTSO6, OffloadTSO6}, {virtioNetGuestECN, OffloadTSOECN},
		{virtioNetGuestUFO, OffloadUFO}, {virtioNetGuestUSO4, OffloadUSO4},
		{virtioNetGuestUSO6, OffloadUSO6},
	} {
		if features&(1<<m.bit) != 0 {
			o |= m.o
		}
	}
	return o.Normalize()
}

// probeOffloads finds the largest offload set the kernel accepts on fd,
// trying newer flags first and falling back on EINVAL, and leaves the
// offloads off.
func probeOffloads(fd int) Offload {
	var got Offload
	for _, try := range []Offload{
		offloadAll,
		offloadAll &^ offloadUSO,
		OffloadCsum | OffloadTSO4 | OffloadTSO6 | OffloadTSOECN,
		OffloadCsum,
	} {
		if unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, int(try)) == nil {
			got = try
			break
		}
	}
	_ = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, 0)
	return got
}

// SupportedOffloads is the offload set the kernel accepted when Open
// probed it. A set including OffloadUSO4 also tells the device that writes
// with gso_type UDP_L4 are accepted (so HOST_USO can be offered).
func (t *Tap) SupportedOffloads() Offload { return t.supported }

// Offload is the offload set last applied by SetOffload (none after Open).
func (t *Tap) Offload() Offload {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.offload
}

// SetOffload applies want with TUNSETOFFLOAD and returns the set actually
// in force. want is normalised (see Normalize) and reduced to
// SupportedOffloads; if the kernel still refuses USO with EINVAL the call
// is retried without it. Unknown bits fail with EINVAL. The setting is per
// interface, shared by all queues. The device calls it with
// OffloadsForGuest(acked) when the driver sets DRIVER_OK, again after every
// renegotiation, and SetOffload(0) on reset. Not a data-path call: its
// errors are wrapped.
func (t *Tap) SetOffload(want Offload) (Offload, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if want&^offloadAll != 0 {
		return t.offload, os.NewSyscallError("ioctl TUNSETOFFLOAD "+want.String(), unix.EINVAL)
	}
	o := want.Normalize() & t.supported
	err := t.queues[0].control("ioctl TUNSETOFFLOAD", func(fd int) error {
		err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, int(o))
		if err == unix.EINVAL && o&offloadUSO != 0 {
			o &^= offloadUSO
			err = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, int(o))
		}
		return err
	})
	if err != nil {
		return t.offload, err
	}
	t.offload = o
	return o, nil
}
