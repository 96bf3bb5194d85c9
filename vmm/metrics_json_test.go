package vmm

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// TestMetricsJSONRoundTrip: every counter the devices name reaches the
// file under its metric path and reads back, the keys of earlier files
// among them (a reader of the file depends on them).
func TestMetricsJSONRoundTrip(t *testing.T) {
	var in Metrics
	in.Net = map[string]NetMetrics{"eth0": {TAP: "tap0"}}
	in.Block = map[string]BlockMetric{"root": {}}
	n, b := in.Net["eth0"], in.Block["root"]
	for i, c := range n.Stats.Counters() {
		*c.Value = 1<<60 + uint64(i) // beyond float64's exact integers
	}
	for i, c := range b.Stats.Counters() {
		*c.Value = uint64(100 + i)
	}
	in.Net["eth0"], in.Block["root"] = n, b
	// A two-pair interface carries its pairs' counters too.
	in.Net["eth1"] = NetMetrics{TAP: "tap1", Pairs: []PairMetrics{{1, 2, 3, 4}, {5, 6, 7, 8}}, PairsInUse: 2}
	raw, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"host_dev_name":"tap0"`, `"rx_drops":{`, `"backend_refused":`, `"malformed_chain":`,
		`"rx_rate_limiter_throttled":`, `"broken_queues":`, `"tx_waits":`, `"read_ops":`, `"malformed_chains":`, `"rate_limiter_throttled":`,
		`"queue_pairs":[{"rx_packets":1,"rx_bytes":2,"tx_packets":3,"tx_bytes":4},{"rx_packets":5,`, `"queue_pairs_in_use":2`} {
		if !strings.Contains(string(raw), key) {
			t.Errorf("no %s in %s", key, raw)
		}
	}
	if one, _ := json.Marshal(in.Net["eth0"]); strings.Contains(string(one), "queue_pairs") {
		t.Errorf("a one-pair interface has pair counters: %s", one)
	}
	var out Metrics
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in.Net, out.Net) || !reflect.DeepEqual(in.Block, out.Block) {
		t.Fatalf("round trip:\n%+v\n%+v", in, out)
	}
	if err := json.Unmarshal([]byte(`{"rx_bytes":"x"}`), &n); err == nil {
		t.Fatal("a string counter accepted")
	}
}
