package vmm

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// MetricsInterval is how often a running VM flushes metrics (Firecracker's
// period).
const MetricsInterval = 60 * time.Second

// metricsFile is the open metrics_path. mu serialises flushes and guards
// closed, which Close sets before the devices go away.
type metricsFile struct {
	mu     sync.Mutex
	f      *os.File
	closed bool
}

func openMetrics(path string) (*metricsFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("metrics_path: %w", err)
	}
	return &metricsFile{f: f}, nil
}

// Metrics is one flush: counters are totals since the VM started (a reader
// takes differences for rates), keyed by interface id (the TAP name for a
// --net interface).
type Metrics struct {
	UTCTimestampMs int64                  `json:"utc_timestamp_ms"`
	UptimeMs       int64                  `json:"uptime_ms"`
	VCPU           []VCPUMetrics          `json:"vcpu"`
	Net            map[string]NetMetrics  `json:"net"`
	Block          map[string]BlockMetric `json:"block"`
}

// VCPUMetrics counts one vCPU's exits to Flint by kind (port I/O, MMIO,
// interrupted by a kick or a signal, anything else).
type VCPUMetrics struct {
	ExitIO    uint64 `json:"exit_io"`
	ExitMMIO  uint64 `json:"exit_mmio"`
	ExitIntr  uint64 `json:"exit_intr"`
	ExitOther uint64 `json:"exit_other"`
}

// NetMetrics is one interface's traffic as the virtio-net device counts it
// (bytes without the virtio-net header) and its drops by reason.
type NetMetrics struct {
	TAP       string `json:"host_dev_name"`
	RxBytes   uint64 `json:"rx_bytes"`
	RxPackets uint64 `json:"rx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	RxDrops   RxDrop `json:"rx_drops"`
	TxDrops   TxDrop `json:"tx_drops"`
	RxWaits   uint64 `json:"rx_waits"` // the guest had no receive buffers
	TxWaits   uint64 `json:"tx_waits"` // the TAP pushed back
	RxIRQs    uint64 `json:"rx_interrupts"`
	TxIRQs    uint64 `json:"tx_interrupts"`
	// RxThrottled and TxThrottled: pauses for the interface's rate
	// limiters (Firecracker's rx/tx_rate_limiter_throttled).
	RxThrottled uint64 `json:"rx_rate_limiter_throttled"`
	TxThrottled uint64 `json:"tx_rate_limiter_throttled"`
	QueueFault  uint64 `json:"broken_queues"`
}

// RxDrop counts frames or buffers lost on the way to the guest, by reason.
type RxDrop struct {
	Oversize     uint64 `json:"oversize"`
	Short        uint64 `json:"short"`
	Header       uint64 `json:"bad_header"`
	BadChain     uint64 `json:"bad_chain"`
	Malformed    uint64 `json:"malformed_chain"`
	BackendError uint64 `json:"backend_error"`
}

// TxDrop counts frames from the guest that never reached the TAP.
type TxDrop struct {
	Short     uint64 `json:"short"`
	Refused   uint64 `json:"backend_refused"`
	Malformed uint64 `json:"malformed_chain"`
}

// BlockMetric is one drive's counters, as the virtio-blk device keeps them.
type BlockMetric struct {
	ReadOps     uint64 `json:"read_ops"`
	ReadBytes   uint64 `json:"read_bytes"`
	WriteOps    uint64 `json:"write_ops"`
	WriteBytes  uint64 `json:"write_bytes"`
	Flushes     uint64 `json:"flushes"`
	IOErrors    uint64 `json:"io_errors"`
	HostErrors  uint64 `json:"host_errors"`
	Unsupported uint64 `json:"unsupported"`
	BadChains   uint64 `json:"bad_chains"`
	Malformed   uint64 `json:"malformed_chains"`
	Throttled   uint64 `json:"rate_limiter_throttled"`
	Interrupts  uint64 `json:"interrupts"`
}

// collectMetrics reads every counter now.
func (m *Machine) collectMetrics() Metrics {
	now := time.Now()
	out := Metrics{UTCTimestampMs: now.UnixMilli(), UptimeMs: now.Sub(m.start).Milliseconds(),
		VCPU: make([]VCPUMetrics, len(m.exits)), Net: map[string]NetMetrics{}, Block: map[string]BlockMetric{}}
	for i := range m.exits {
		c := &m.exits[i]
		out.VCPU[i] = VCPUMetrics{ExitIO: c.io.Load(), ExitMMIO: c.mmio.Load(), ExitIntr: c.intr.Load(), ExitOther: c.other.Load()}
	}
	for _, nd := range m.nets {
		s := nd.dev.Stats()
		id := nd.cfg.ID
		if id == "" {
			id = nd.cfg.TAP
		}
		out.Net[id] = NetMetrics{TAP: nd.cfg.TAP,
			RxBytes: s.RxBytes, RxPackets: s.RxPackets, TxBytes: s.TxBytes, TxPackets: s.TxPackets,
			RxDrops: RxDrop{Oversize: s.RxDropOversize, Short: s.RxDropShort, Header: s.RxDropHeader,
				BadChain: s.RxBadChains, Malformed: s.RxMalformed, BackendError: s.RxBackendErrors},
			TxDrops: TxDrop{Short: s.TxDropShort, Refused: s.TxErrors, Malformed: s.TxMalformed},
			RxWaits: s.RxWaits, TxWaits: s.TxWaits, RxIRQs: s.RxInterrupts, TxIRQs: s.TxInterrupts,
			RxThrottled: s.RxThrottled, TxThrottled: s.TxThrottled,
			QueueFault: s.Broken}
	}
	for i, d := range m.drives {
		s := d.Stats()
		out.Block[m.driveIDs[i]] = BlockMetric{ReadOps: s.ReadOps, ReadBytes: s.ReadBytes, WriteOps: s.WriteOps,
			WriteBytes: s.WriteBytes, Flushes: s.Flushes, IOErrors: s.IOErrors, HostErrors: s.HostErrors,
			Unsupported: s.Unsupported, BadChains: s.BadChains, Malformed: s.Malformed, Throttled: s.Throttled,
			Interrupts: s.Interrupts}
	}
	return out
}

// ErrNoMetrics is FlushMetrics' error when the VM has no metrics_path.
var ErrNoMetrics = errors.New("no metrics file is configured (metrics.metrics_path)")

// FlushMetrics appends one JSON object with every counter, and a newline,
// to the metrics file. It is safe from any goroutine while the VM exists.
func (m *Machine) FlushMetrics() error {
	mf := m.metrics
	if mf == nil {
		return ErrNoMetrics
	}
	mf.mu.Lock()
	defer mf.mu.Unlock()
	if mf.closed {
		return errors.New("the VM is closed")
	}
	b, err := json.Marshal(m.collectMetrics())
	if err != nil {
		return err
	}
	if _, err := mf.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("writing metrics: %w", err)
	}
	return nil
}

// startMetrics flushes every MetricsInterval until the VM stops.
func (m *Machine) startMetrics() {
	if m.metrics == nil {
		return
	}
	go func() {
		t := time.NewTicker(MetricsInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if err := m.FlushMetrics(); err != nil {
					m.log.Warn("metrics flush", "err", err)
				}
			case <-m.stopped:
				return
			}
		}
	}()
}

// closeMetrics closes the file; later flushes fail instead of reading
// devices that are going away.
func (m *Machine) closeMetrics() {
	if m.metrics == nil {
		return
	}
	m.metrics.mu.Lock()
	defer m.metrics.mu.Unlock()
	m.metrics.closed = true
	m.metrics.f.Close()
}
