package vsock

import "github.com/flintvm/flint/virtio"

// Stats are the device's counters. They accumulate over the device's
// life (Reset keeps them) and are updated atomically.
type Stats struct {
	// TxPackets and TxBytes count well-formed guest packets and their
	// payload bytes (guest -> host).
	TxPackets, TxBytes uint64
	// RxPackets and RxBytes count packets and payload bytes delivered to
	// the guest.
	RxPackets, RxBytes uint64
	// ConnsGuest and ConnsHost count connections opened by the guest and
	// by host processes (CONNECT).
	ConnsGuest, ConnsHost uint64
	// ConnsRefused counts connections refused: nothing listening on the
	// host, the guest's RST or silence, a bad CONNECT line, the cap.
	ConnsRefused uint64
	// ConnsReset counts connections the guest reset.
	ConnsReset uint64
	// ConnsClosed counts connections removed, for any reason.
	ConnsClosed uint64
	// BadPackets counts packets answered with RST: malformed headers,
	// packets for no connection or the wrong state.
	BadPackets uint64
	// CreditViolations counts data beyond the credit the device gave.
	CreditViolations uint64
	// RSTSent counts RSTs sent; RSTDropped those dropped (queue full).
	RSTSent, RSTDropped uint64
	// HostErrors counts unix socket reads and writes that failed.
	HostErrors uint64
	// AcceptErrors counts failed accepts on the listener.
	AcceptErrors uint64
	// BadChains counts chains with buffers of the wrong direction or too
	// small for a header (completed with used length 0).
	BadChains uint64
	// Malformed counts chains the queues rejected.
	Malformed uint64
	// Interrupts counts used-buffer notifications sent.
	Interrupts uint64
	// Broken counts queues the driver broke.
	Broken uint64
}

type counter int

const (
	cTxPackets counter = iota
	cTxBytes
	cRxPackets
	cRxBytes
	cConnsGuest
	cConnsHost
	cConnsRefused
	cConnsReset
	cConnsClosed
	cBadPackets
	cCreditViolations
	cRSTSent
	cRSTDropped
	cHostErrors
	cAcceptErrors
	cBadChains
	cMalformed
	cInterrupts
	cBroken
	numCounters
)

// names is the one place that names each Stats field (TestCountersNamed
// checks it covers Stats).
var names = [numCounters]virtio.Named[Stats]{
	cTxPackets:        virtio.Key("tx_packets", func(s *Stats) *uint64 { return &s.TxPackets }),
	cTxBytes:          virtio.Key("tx_bytes", func(s *Stats) *uint64 { return &s.TxBytes }),
	cRxPackets:        virtio.Key("rx_packets", func(s *Stats) *uint64 { return &s.RxPackets }),
	cRxBytes:          virtio.Key("rx_bytes", func(s *Stats) *uint64 { return &s.RxBytes }),
	cConnsGuest:       virtio.Key("conns_guest", func(s *Stats) *uint64 { return &s.ConnsGuest }),
	cConnsHost:        virtio.Key("conns_host", func(s *Stats) *uint64 { return &s.ConnsHost }),
	cConnsRefused:     virtio.Key("conns_refused", func(s *Stats) *uint64 { return &s.ConnsRefused }),
	cConnsReset:       virtio.Key("conns_reset", func(s *Stats) *uint64 { return &s.ConnsReset }),
	cConnsClosed:      virtio.Key("conns_closed", func(s *Stats) *uint64 { return &s.ConnsClosed }),
	cBadPackets:       virtio.Key("bad_packets", func(s *Stats) *uint64 { return &s.BadPackets }),
	cCreditViolations: virtio.Key("credit_violations", func(s *Stats) *uint64 { return &s.CreditViolations }),
	cRSTSent:          virtio.Key("rst_sent", func(s *Stats) *uint64 { return &s.RSTSent }),
	cRSTDropped:       virtio.Key("rst_dropped", func(s *Stats) *uint64 { return &s.RSTDropped }),
	cHostErrors:       virtio.Key("host_errors", func(s *Stats) *uint64 { return &s.HostErrors }),
	cAcceptErrors:     virtio.Key("accept_errors", func(s *Stats) *uint64 { return &s.AcceptErrors }),
	cBadChains:        virtio.Key("bad_chains", func(s *Stats) *uint64 { return &s.BadChains }),
	cMalformed:        virtio.Key("malformed_chains", func(s *Stats) *uint64 { return &s.Malformed }),
	cInterrupts:       virtio.Key("interrupts", func(s *Stats) *uint64 { return &s.Interrupts }),
	cBroken:           virtio.Key("broken_queues", func(s *Stats) *uint64 { return &s.Broken }),
}

// Counters lists every field of s with its names, in a fixed order.
func (s *Stats) Counters() []virtio.Counter { return virtio.Counters(s, names[:]) }

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats { return d.stats.Stats() }
