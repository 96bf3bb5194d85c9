package net

import "sync/atomic"

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

// counters are the published totals.
type counters [numCounters]atomic.Uint64

// deltas are an engine's unpublished counts: plain integers, touched by
// one goroutine, added to the totals in publish.
type deltas [numCounters]uint64

func (dl *deltas) publish(c *counters) {
	for i, v := range dl {
		if v != 0 {
			c[i].Add(v)
			dl[i] = 0
		}
	}
}

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats {
	c := &d.stats
	g := func(i counter) uint64 { return c[i].Load() }
	return Stats{
		RxPackets: g(cRxPackets), RxBytes: g(cRxBytes), RxBuffers: g(cRxBuffers),
		RxInterrupts: g(cRxInterrupts), RxDropOversize: g(cRxDropOversize),
		RxDropShort: g(cRxDropShort), RxDropHeader: g(cRxDropHeader),
		RxBadChains: g(cRxBadChains), RxMalformed: g(cRxMalformed), RxWaits: g(cRxWaits),
		RxBackendErrors: g(cRxBackendErrors), RxThrottled: g(cRxThrottled), TxThrottled: g(cTxThrottled),
		TxPackets: g(cTxPackets), TxBytes: g(cTxBytes), TxInterrupts: g(cTxInterrupts),
		TxDropShort: g(cTxDropShort), TxErrors: g(cTxErrors), TxMalformed: g(cTxMalformed),
		TxWaits:      g(cTxWaits),
		CtrlCommands: g(cCtrlCommands), CtrlRejected: g(cCtrlRejected), CtrlMalformed: g(cCtrlMalformed),
		Broken: g(cBroken),
	}
}

// engineEnv is what every queue's handler shares with the device.
type engineEnv struct {
	be       Backend
	stopping *atomic.Bool // set by Reset before it wakes the goroutines
	stats    *counters
}
