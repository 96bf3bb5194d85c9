package vmm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/blk"
	"github.com/flintvm/flint/virtio/netdev"
)

// MetricsInterval is how often a running VM flushes metrics (Firecracker's
// period).
const MetricsInterval = 60 * time.Second

// metricsFile is the open metrics_path. mu serialises flushes and guards
// closed, which Close sets before the devices go away.
type metricsFile struct {
	mu     sync.Mutex
	f      *OutputFile
	closed bool
}

func openMetrics(path string) (*metricsFile, error) {
	// Append-only, 0600, never through a symbolic link, a FIFO only with a
	// reader (internal/hostfile): the same rules as the console and log files.
	f, err := OpenOutput(path)
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

// NetMetrics is one interface's counters as the virtio-net device keeps
// them (bytes without the virtio-net header), with the TAP's name. In the
// file they are nested as the device's counter list says
// (netdev.Stats.Counters: "rx_drops": {"oversize": ...} ...).
type NetMetrics struct {
	TAP string // "host_dev_name"
	netdev.Stats
	// Pairs are the per-queue-pair counters of a multiqueue device
	// ("queue_pairs", absent with one pair) and PairsInUse the pairs the
	// driver enabled with VQ_PAIRS_SET ("queue_pairs_in_use").
	Pairs      []PairMetrics
	PairsInUse int
}

// PairMetrics is one queue pair's traffic (frames and bytes without the
// virtio-net header).
type PairMetrics struct {
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
}

// netPairsJSON is the multiqueue part of an interface's metrics.
type netPairsJSON struct {
	Pairs      []PairMetrics `json:"queue_pairs,omitempty"`
	PairsInUse int           `json:"queue_pairs_in_use,omitempty"`
}

// BlockMetric is one drive's counters, as the virtio-blk device keeps
// them (blk.Stats.Counters names them).
type BlockMetric struct {
	blk.Stats
}

// MarshalJSON writes the counters as their metric paths say, and
// host_dev_name.
func (n NetMetrics) MarshalJSON() ([]byte, error) {
	tree := counterTree(n.Stats.Counters())
	tree["host_dev_name"] = n.TAP
	if len(n.Pairs) > 0 {
		tree["queue_pairs"] = n.Pairs
		tree["queue_pairs_in_use"] = n.PairsInUse
	}
	return json.Marshal(tree)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (n *NetMetrics) UnmarshalJSON(b []byte) error {
	tree, err := decodeTree(b)
	if err != nil {
		return err
	}
	n.TAP, _ = tree["host_dev_name"].(string)
	var mq netPairsJSON
	if err := json.Unmarshal(b, &mq); err != nil {
		return err
	}
	n.Pairs, n.PairsInUse = mq.Pairs, mq.PairsInUse
	return fromTree(tree, n.Stats.Counters())
}

// MarshalJSON writes the counters as their metric paths say.
func (m BlockMetric) MarshalJSON() ([]byte, error) {
	return json.Marshal(counterTree(m.Stats.Counters()))
}

// UnmarshalJSON reads what MarshalJSON writes.
func (m *BlockMetric) UnmarshalJSON(b []byte) error {
	tree, err := decodeTree(b)
	if err != nil {
		return err
	}
	return fromTree(tree, m.Stats.Counters())
}

// counterTree nests counters by their dotted metric paths.
func counterTree(counters []virtio.Counter) map[string]any {
	tree := map[string]any{}
	for _, c := range counters {
		node, path := tree, strings.Split(c.Metric, ".")
		for _, k := range path[:len(path)-1] {
			sub, ok := node[k].(map[string]any)
			if !ok {
				sub = map[string]any{}
				node[k] = sub
			}
			node = sub
		}
		node[path[len(path)-1]] = *c.Value
	}
	return tree
}

// decodeTree decodes a JSON object, numbers as json.Number (a uint64
// counter does not fit a float64).
func decodeTree(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var tree map[string]any
	err := d.Decode(&tree)
	return tree, err
}

// fromTree fills counters from a decoded counterTree; a counter missing
// from it (a file from an older Flint) stays 0.
func fromTree(tree map[string]any, counters []virtio.Counter) error {
	for _, c := range counters {
		var v any = tree
		for _, k := range strings.Split(c.Metric, ".") {
			node, ok := v.(map[string]any)
			if !ok {
				v = nil
				break
			}
			v = node[k]
		}
		if v == nil {
			continue
		}
		num, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("metrics: %s is %T, not a number", c.Metric, v)
		}
		n, err := strconv.ParseUint(string(num), 10, 64)
		if err != nil {
			return fmt.Errorf("metrics: %s: %w", c.Metric, err)
		}
		*c.Value = n
	}
	return nil
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
		nm := NetMetrics{TAP: nd.cfg.TAP, Stats: s}
		if nd.dev.Pairs() > 1 {
			for _, p := range nd.dev.PairStats() {
				nm.Pairs = append(nm.Pairs, PairMetrics(p))
			}
			nm.PairsInUse = nd.dev.ActivePairs()
		}
		out.Net[id] = nm
	}
	for i, d := range m.drives {
		out.Block[m.driveIDs[i]] = BlockMetric{d.Stats()}
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
