package netdev

import (
	"sync/atomic"

	"github.com/flintvm/flint/virtio"
)

// Stats are the device's counters. They accumulate over the device's
// life (Reset keeps them) and are published by the device goroutines at
// the end of every batch, so a snapshot can lag by one batch. Each counter
// is published on its own, so a snapshot taken while the device runs can
// also hold part of a batch (a packet counted, the malformed chain beside
// it not yet): compare counters with each other only after Reset, which
// waits for the engines and their last publish.
type Stats struct {
	// RxPackets and RxBytes count frames delivered to the guest (bytes
	// without the virtio-net header); RxBuffers the receive buffers they
	// used (more than RxPackets with MRG_RXBUF when packets span buffers).
	RxPackets, RxBytes, RxBuffers uint64
	// RxInterrupts counts used-buffer notifications on the receive queue.
	RxInterrupts uint64
	// RxDropOversize: frames larger than the guest's buffers (larger than
	// the largest packet the negotiated features allow, or than a small
	// mode buffer), and non-GSO frames above a negotiated MTU. Never
	// delivered truncated.
	RxDropOversize uint64
	// RxDropShort: frames shorter than a header plus an Ethernet header.
	RxDropShort uint64
	// RxDropHeader: frames whose header uses an offload the driver did not
	// negotiate (NEEDS_CSUM without GUEST_CSUM, a GSO type or ECN without
	// the matching GUEST_* feature).
	RxDropHeader uint64
	// RxBadChains: receive chains too small for a header (or with no
	// device-writable buffer at all), returned with used length 0.
	RxBadChains uint64
	// RxMalformed: receive chains the queue rejected (already returned
	// with used length 0).
	RxMalformed uint64
	// RxWaits counts the times the device stopped reading the backend
	// because the guest had no room, until the guest added buffers.
	RxWaits uint64
	// RxBackendErrors: the backend failed on read (closed, gone); the
	// receive side stops until reset.
	RxBackendErrors uint64
	// RxThrottled and TxThrottled count the times a rate limiter made
	// the device pause (Options.RxLimiter, TxLimiter).
	RxThrottled, TxThrottled uint64

	// TxPackets and TxBytes count frames the backend accepted (bytes
	// without the header).
	TxPackets, TxBytes uint64
	// TxInterrupts counts used-buffer notifications on the transmit queue.
	TxInterrupts uint64
	// TxDropShort: transmit chains shorter than the header, dropped.
	TxDropShort uint64
	// TxDropHeader: frames whose header asks for an offload the driver
	// did not negotiate (NEEDS_CSUM without CSUM, a GSO type or ECN
	// without the matching HOST_* feature), dropped before the backend.
	TxDropHeader uint64
	// TxErrors: frames the backend refused (bad header, interface down,
	// backend gone), dropped.
	TxErrors uint64
	// TxMalformed: transmit chains the queue rejected.
	TxMalformed uint64
	// TxWaits counts the times the backend pushed back (EAGAIN) and the
	// device waited for it to become writable.
	TxWaits uint64

	// CtrlCommands counts control commands answered OK, CtrlRejected
	// those answered ERR or too short to answer, CtrlMalformed chains
	// the control queue rejected.
	CtrlCommands, CtrlRejected, CtrlMalformed uint64

	// Broken counts queues found broken (the device then asked for
	// DEVICE_NEEDS_RESET).
	Broken uint64
}

type counter int

const (
	cRxPackets counter = iota
	cRxBytes
	cRxBuffers
	cRxInterrupts
	cRxDropOversize
	cRxDropShort
	cRxDropHeader
	cRxBadChains
	cRxMalformed
	cRxWaits
	cRxBackendErrors
	cRxThrottled
	cTxPackets
	cTxBytes
	cTxInterrupts
	cTxDropShort
	cTxDropHeader
	cTxErrors
	cTxMalformed
	cTxWaits
	cTxThrottled
	cCtrlCommands
	cCtrlRejected
	cCtrlMalformed
	cBroken
	numCounters
)

// tally is the published totals.
type tally = virtio.Tally[Stats, counter]

// deltas are an engine's unpublished counts: plain integers, touched by
// one goroutine, added to the totals in publish.
type deltas [numCounters]uint64

func (dl *deltas) publish(c *statSink) {
	if p := c.pair; p != nil {
		p.add(dl)
	}
	for i, v := range dl {
		if v != 0 {
			c.Add(counter(i), v)
			dl[i] = 0
		}
	}
}

// statSink is where an engine publishes: the device's totals and, for
// a queue pair's engines, the pair's own counters.
type statSink struct {
	*tally
	pair *pairTally // nil: the control queue's
}

// PairStats are one queue pair's traffic counters (the device's totals
// in Stats add them up): frames delivered to the guest on its receive
// queue and frames its transmit queue sent to the backend, bytes without
// the virtio-net header.
type PairStats struct {
	RxPackets, RxBytes, TxPackets, TxBytes uint64
}

// pairTally is a pair's published PairStats.
type pairTally struct {
	rxPackets, rxBytes, txPackets, txBytes atomic.Uint64
}

func (p *pairTally) add(dl *deltas) {
	for _, c := range [...]struct {
		v *atomic.Uint64
		n uint64
	}{{&p.rxPackets, dl[cRxPackets]}, {&p.rxBytes, dl[cRxBytes]}, {&p.txPackets, dl[cTxPackets]}, {&p.txBytes, dl[cTxBytes]}} {
		if c.n != 0 {
			c.v.Add(c.n)
		}
	}
}

// PairStats returns a snapshot of each queue pair's counters, pair 1
// first. Like Stats, they accumulate over the device's life.
func (d *Device) PairStats() []PairStats {
	out := make([]PairStats, len(d.pairs))
	for k := range d.pairs {
		p := &d.pairs[k].stats
		out[k] = PairStats{RxPackets: p.rxPackets.Load(), RxBytes: p.rxBytes.Load(),
			TxPackets: p.txPackets.Load(), TxBytes: p.txBytes.Load()}
	}
	return out
}

// names is the one place that names each Stats field: its key in logs
// and dumps, its path in the metrics file, and the field itself. Stats,
// Counters and therefore every log line, dump and metrics flush read the
// fields through it (TestCountersNamed checks it covers Stats).
var names = [numCounters]virtio.Named[Stats]{
	cRxPackets:       virtio.Name("rx_packets", "rx_packets", func(s *Stats) *uint64 { return &s.RxPackets }),
	cRxBytes:         virtio.Name("rx_bytes", "rx_bytes", func(s *Stats) *uint64 { return &s.RxBytes }),
	cRxBuffers:       virtio.Name("rx_buffers", "rx_buffers", func(s *Stats) *uint64 { return &s.RxBuffers }),
	cRxInterrupts:    virtio.Name("rx_interrupts", "rx_interrupts", func(s *Stats) *uint64 { return &s.RxInterrupts }),
	cRxDropOversize:  virtio.Name("rx_drop_oversize", "rx_drops.oversize", func(s *Stats) *uint64 { return &s.RxDropOversize }),
	cRxDropShort:     virtio.Name("rx_drop_short", "rx_drops.short", func(s *Stats) *uint64 { return &s.RxDropShort }),
	cRxDropHeader:    virtio.Name("rx_drop_header", "rx_drops.bad_header", func(s *Stats) *uint64 { return &s.RxDropHeader }),
	cRxBadChains:     virtio.Name("rx_bad_chains", "rx_drops.bad_chain", func(s *Stats) *uint64 { return &s.RxBadChains }),
	cRxMalformed:     virtio.Name("rx_malformed", "rx_drops.malformed_chain", func(s *Stats) *uint64 { return &s.RxMalformed }),
	cRxWaits:         virtio.Name("rx_waits", "rx_waits", func(s *Stats) *uint64 { return &s.RxWaits }),
	cRxBackendErrors: virtio.Name("rx_backend_errors", "rx_drops.backend_error", func(s *Stats) *uint64 { return &s.RxBackendErrors }),
	cRxThrottled:     virtio.Name("rx_throttled", "rx_rate_limiter_throttled", func(s *Stats) *uint64 { return &s.RxThrottled }),
	cTxPackets:       virtio.Name("tx_packets", "tx_packets", func(s *Stats) *uint64 { return &s.TxPackets }),
	cTxBytes:         virtio.Name("tx_bytes", "tx_bytes", func(s *Stats) *uint64 { return &s.TxBytes }),
	cTxInterrupts:    virtio.Name("tx_interrupts", "tx_interrupts", func(s *Stats) *uint64 { return &s.TxInterrupts }),
	cTxDropShort:     virtio.Name("tx_drop_short", "tx_drops.short", func(s *Stats) *uint64 { return &s.TxDropShort }),
	cTxDropHeader:    virtio.Name("tx_drop_header", "tx_drops.bad_header", func(s *Stats) *uint64 { return &s.TxDropHeader }),
	cTxErrors:        virtio.Name("tx_errors", "tx_drops.backend_refused", func(s *Stats) *uint64 { return &s.TxErrors }),
	cTxMalformed:     virtio.Name("tx_malformed", "tx_drops.malformed_chain", func(s *Stats) *uint64 { return &s.TxMalformed }),
	cTxWaits:         virtio.Name("tx_waits", "tx_waits", func(s *Stats) *uint64 { return &s.TxWaits }),
	cTxThrottled:     virtio.Name("tx_throttled", "tx_rate_limiter_throttled", func(s *Stats) *uint64 { return &s.TxThrottled }),
	cCtrlCommands:    virtio.Name("ctrl_commands", "ctrl.commands", func(s *Stats) *uint64 { return &s.CtrlCommands }),
	cCtrlRejected:    virtio.Name("ctrl_rejected", "ctrl.rejected", func(s *Stats) *uint64 { return &s.CtrlRejected }),
	cCtrlMalformed:   virtio.Name("ctrl_malformed", "ctrl.malformed_chain", func(s *Stats) *uint64 { return &s.CtrlMalformed }),
	cBroken:          virtio.Name("broken", "broken_queues", func(s *Stats) *uint64 { return &s.Broken }),
}

// Counters lists every field of s with its names, in a fixed order, for
// logs, dumps and metrics (and pointers into s, to fill it from them).
func (s *Stats) Counters() []virtio.Counter { return virtio.Counters(s, names[:]) }

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats { return d.stats.Stats() }

// engineEnv is what every queue's handler shares with the device.
type engineEnv struct {
	be      Backend
	engines *virtio.Engines // Stopping is set by Reset before it wakes the goroutines
	stats   *statSink
}
