// Package configs owns the user-facing description of a VM's parts: the
// structs, their defaults, and validation whose errors name the field. It
// parses what users write (CLI flag values, Firecracker's config file and
// API bodies, in the shapes Firecracker writes them: null and [] for a
// feature that is off mean absent) and checks, with stat, that the files
// they name exist; it knows nothing of KVM or devices.
package configs

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Transport selects how a virtio device appears to the guest.
type Transport string

// Transports.
const (
	TransportPCI  Transport = "pci"
	TransportMMIO Transport = "mmio"
)

// Net MTU limits: the guest sees MTU through the virtio-net config space.
const (
	MinMTU     = 68
	MaxMTU     = 65535
	DefaultMTU = 1500
)

// MaxNetQueues is the most queue pairs an interface may have (queues=N):
// virtio/netdev's MaxQueuePairs.
const MaxNetQueues = 64

// NetInterface is one virtio-net interface bridged to a host TAP.
type NetInterface struct {
	// ID is the interface's name in a config file or the API (iface_id);
	// empty for --net interfaces.
	ID string
	// TAP is the host TAP device's name.
	TAP string
	// MAC is the guest's address; nil means one is derived from the TAP
	// name (stable across runs, locally administered).
	MAC net.HardwareAddr
	// Transport is pci (default) or mmio.
	Transport Transport
	// MTU is announced to the guest (VIRTIO_NET_F_MTU).
	MTU int
	// Feature switches, all on by default.
	MrgRxbuf, TSO, Csum, UFO, Indirect, EventIdx bool
	// Packed offers the packed virtqueue layout (VIRTIO_F_RING_PACKED);
	// off by default, since Linux negotiates it whenever offered.
	Packed bool
	// Queues is the number of receive/transmit queue pairs (virtio-net
	// multiqueue, one TAP queue each), 1 to MaxNetQueues; default 1 (0
	// also means 1).
	Queues int
	// RxRateLimiter and TxRateLimiter limit traffic to and from the guest;
	// nil means unlimited.
	RxRateLimiter, TxRateLimiter *RateLimiter
	// GuestIP is the address command mode's guest agent gives the
	// interface (--net ...,ip=CIDR, IPv4); the zero Prefix means none.
	// Plain `flint run` refuses it: there the guest configures itself.
	GuestIP netip.Prefix
	// RxIRQGap and TxIRQGap are the least time between two interrupts of
	// one receive or transmit queue (interrupt moderation), 0 to
	// MaxIRQGap; 0 interrupts at once. Defaults: DefaultRxIRQGap and 0.
	// The transmit gap holds only small frames' completions (see
	// netdev.Options).
	RxIRQGap, TxIRQGap time.Duration
	// IRQResend, 0 to MaxIRQGap, has each queue's last notification
	// checked once the interface has sent none for that long, and sent
	// again if the guest still wants it then (for a frontend that can
	// lose one: UML; net-backend sets it by default, flint run does not
	// need it); default 0.
	IRQResend time.Duration
	// Poll is the busy-poll window of every queue's engine, 0 to MaxPoll
	// (an opt-in that spends CPU for latency: an engine polls its ring or
	// its TAP that long at most before it waits, and the window adapts
	// to how soon work comes back); default 0, no polling.
	Poll time.Duration
}

// DefaultRxIRQGap is the receive queues' default interrupt gap: at most
// one receive interrupt per queue every 50 µs under load, none delayed
// when packets come further apart (BENCHMARKS.md, "Interrupt spacing").
const DefaultRxIRQGap = 50 * time.Microsecond

// DefaultBackendIRQResend is net-backend's default IRQResend: a
// notification UML lost (it loses about one in fifteen in a
// request-response exchange: BENCHMARKS.md, "A lost notification") is
// sent again within a quarter of a millisecond instead of UML's next
// timer tick, up to 10 ms later.
const DefaultBackendIRQResend = 250 * time.Microsecond

// MaxIRQGap is the longest interrupt gap a configuration may ask for.
const MaxIRQGap = time.Millisecond

// MaxPoll is the longest busy-poll window a configuration may ask for:
// MaxIRQGap's bound, so that one parser serves both.
const MaxPoll = MaxIRQGap

// DefaultNetInterface returns an interface on tap with every default.
func DefaultNetInterface(tap string) NetInterface {
	return NetInterface{TAP: tap, Transport: TransportPCI, MTU: DefaultMTU,
		MrgRxbuf: true, TSO: true, Csum: true, UFO: true, Indirect: true, EventIdx: true, Queues: 1,
		RxIRQGap: DefaultRxIRQGap}
}

// ParseNetFlag parses a --net value:
// tap=NAME[,mac=MAC][,transport=pci|mmio][,mtu=N][,mrg_rxbuf=on|off][,tso=on|off]
// [,csum=on|off][,ufo=on|off][,indirect=on|off][,event_idx=on|off][,packed=on|off][,queues=N]
// [,rx_irq_gap=DURATION][,tx_irq_gap=DURATION][,irq_resend=DURATION][,poll=DURATION][,ip=CIDR].
func ParseNetFlag(s string) (NetInterface, error) {
	n := DefaultNetInterface("")
	seen := map[string]bool{}
	for _, kv := range strings.Split(s, ",") {
		key, val, ok := strings.Cut(kv, "=")
		if !ok || key == "" {
			return n, fmt.Errorf("--net %q: %q is not key=value", s, kv)
		}
		if seen[key] {
			return n, fmt.Errorf("--net %q: %s given twice", s, key)
		}
		seen[key] = true
		var err error
		switch key {
		case "tap":
			n.TAP = val
			if val != "" { // empty: Validate's "a TAP device name is required"
				err = checkTAPName(val)
			}
		case "mac":
			n.MAC, err = parseMAC(val)
		case "transport":
			switch Transport(val) {
			case TransportPCI, TransportMMIO:
				n.Transport = Transport(val)
			default:
				err = fmt.Errorf("want pci or mmio")
			}
		case "mtu":
			n.MTU, err = strconv.Atoi(val)
			if err == nil && (n.MTU < MinMTU || n.MTU > MaxMTU) {
				err = fmt.Errorf("out of range [%d, %d]", MinMTU, MaxMTU)
			} else if err != nil {
				err = fmt.Errorf("not a number")
			}
		case "mrg_rxbuf":
			n.MrgRxbuf, err = parseOnOff(val)
		case "tso":
			n.TSO, err = parseOnOff(val)
		case "csum":
			n.Csum, err = parseOnOff(val)
		case "ufo":
			n.UFO, err = parseOnOff(val)
		case "indirect":
			n.Indirect, err = parseOnOff(val)
		case "event_idx":
			n.EventIdx, err = parseOnOff(val)
		case "packed":
			n.Packed, err = parseOnOff(val)
		case "queues":
			n.Queues, err = strconv.Atoi(val)
			if err == nil && (n.Queues < 1 || n.Queues > MaxNetQueues) {
				err = fmt.Errorf("out of range [1, %d]", MaxNetQueues)
			} else if err != nil {
				err = fmt.Errorf("not a number")
			}
		case "rx_irq_gap":
			n.RxIRQGap, err = parseIRQGap(val)
		case "tx_irq_gap":
			n.TxIRQGap, err = parseIRQGap(val)
		case "irq_resend":
			n.IRQResend, err = parseIRQGap(val)
		case "poll":
			n.Poll, err = parseIRQGap(val)
		case "ip":
			n.GuestIP, err = parseGuestIP(val)
		default:
			return n, fmt.Errorf("--net %q: unknown key %q (want tap, mac, transport, mtu, mrg_rxbuf, tso, csum, ufo, indirect, event_idx, packed, queues, rx_irq_gap, tx_irq_gap, irq_resend, poll, ip)", s, key)
		}
		if err != nil {
			return n, &NetSpecError{Spec: s, Key: key, Value: val, Err: err}
		}
	}
	if err := n.Validate(); err != nil {
		return n, fmt.Errorf("--net %q: %v", s, err)
	}
	return n, nil
}

// NetSpecError is a --net spec's problem with one of its key=value
// fields, so that a caller that built the spec from its own flags (flint
// net-backend) can name the flag instead.
type NetSpecError struct {
	Spec, Key, Value string
	Err              error // what is wrong with Value
}

func (e *NetSpecError) Error() string {
	return fmt.Sprintf("--net %q: %s=%q: %v", e.Spec, e.Key, e.Value, e.Err)
}

func (e *NetSpecError) Unwrap() error { return e.Err }

// Validate checks n's fields.
func (n NetInterface) Validate() error {
	if n.TAP == "" {
		return fmt.Errorf("tap: a TAP device name is required")
	}
	if err := checkTAPName(n.TAP); err != nil {
		return fmt.Errorf("tap=%q: %v", n.TAP, err)
	}
	if n.MAC != nil && (len(n.MAC) != 6 || n.MAC[0]&1 != 0) {
		return fmt.Errorf("mac=%s: want a 6-byte unicast address", n.MAC)
	}
	if n.MTU < MinMTU || n.MTU > MaxMTU {
		return fmt.Errorf("mtu=%d: out of range [%d, %d]", n.MTU, MinMTU, MaxMTU)
	}
	if n.Queues < 0 || n.Queues > MaxNetQueues {
		return fmt.Errorf("queues=%d: out of range [1, %d]", n.Queues, MaxNetQueues)
	}
	if n.TSO && !n.Csum {
		return fmt.Errorf("tso=on needs csum=on (TCP segmentation offload needs checksum offload)")
	}
	if n.UFO && !n.Csum {
		return fmt.Errorf("ufo=on needs csum=on (UDP fragmentation offload needs checksum offload)")
	}
	for _, g := range []struct {
		key string
		d   time.Duration
	}{{"rx_irq_gap", n.RxIRQGap}, {"tx_irq_gap", n.TxIRQGap}, {"irq_resend", n.IRQResend}, {"poll", n.Poll}} {
		if g.d < 0 || g.d > MaxIRQGap {
			return fmt.Errorf("%s=%v: out of range [0, %v]", g.key, g.d, MaxIRQGap)
		}
	}
	return nil
}

// parseGuestIP reads an IPv4 address with its prefix length (10.0.0.2/24)
// that can be a host's address on its network.
func parseGuestIP(v string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(v)
	if err != nil || !p.Addr().Is4() || p.Bits() < 1 {
		return netip.Prefix{}, fmt.Errorf("want an IPv4 address with its prefix length, like 10.0.0.2/24")
	}
	if a := p.Addr(); a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Prefix{}, fmt.Errorf("not a host address")
	}
	return p, nil
}

// checkTAPName checks that name can be an existing Linux network
// interface's name (the kernel's dev_valid_name: 1 to 15 bytes, not "."
// or "..", no '/', ':' or white space), and that it has no '%': TUNSETIFF
// takes a name with '%' as a pattern ("tap%d") and creates a new device
// instead of attaching to the one named.
func checkTAPName(name string) error {
	switch {
	case name == "" || len(name) >= 16 || name == "." || name == "..":
		return fmt.Errorf("not a valid interface name (1 to 15 characters, not \".\" or \"..\")")
	case strings.ContainsAny(name, "/: \t\n\v\f\r\x00"):
		return fmt.Errorf("not a valid interface name (no '/', ':' or white space)")
	case strings.Contains(name, "%"):
		return fmt.Errorf("not a valid interface name: a '%%' would make the kernel create a new device (\"tap%%d\") instead of using the one named")
	}
	return nil
}

// parseIRQGap parses an interrupt gap or a busy-poll window: a Go
// duration ("50us", "0") from 0 to MaxIRQGap (MaxPoll is the same).
func parseIRQGap(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > MaxIRQGap {
		return 0, fmt.Errorf("want a duration from 0 to %v, such as 50us", MaxIRQGap)
	}
	return d, nil
}

func parseOnOff(v string) (bool, error) {
	switch v {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, fmt.Errorf("want on or off")
}

func parseMAC(v string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(v)
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("want a MAC like 52:54:00:12:34:56")
	}
	if mac[0]&1 != 0 {
		return nil, fmt.Errorf("a multicast address cannot be an interface's MAC")
	}
	if string(mac) == "\x00\x00\x00\x00\x00\x00" {
		// Linux's eth_validate_addr refuses it: the guest could not
		// bring the interface up.
		return nil, fmt.Errorf("the all-zero address cannot be an interface's MAC")
	}
	return mac, nil
}
