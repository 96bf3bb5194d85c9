package virtio

// Device counters, named once: a device lists every field of its Stats
// struct with the names logs, dumps and the metrics file use, and the
// VMM reads them through that list only.

import (
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
)

// Counter is one field of a device's Stats struct with its names.
type Counter struct {
	// Name is the counter's key in log lines and dumps ("rx_packets").
	Name string
	// Metric is its place in the metrics file: a dotted path of JSON
	// object keys ("rx_drops.oversize").
	Metric string
	// Value points at the field in the Stats value the list was made
	// from.
	Value *uint64
}

// Named names one field of a device's Stats struct S: a device keeps one
// table of them, the only place its fields are named.
type Named[S any] struct {
	Name, Metric string
	Field        func(*S) *uint64
}

// Name returns a Named: Name("rx_packets", "rx_packets",
// func(s *Stats) *uint64 { return &s.RxPackets }).
func Name[S any](name, metric string, field func(*S) *uint64) Named[S] {
	return Named[S]{Name: name, Metric: metric, Field: field}
}

// Counters lists the fields of *s that names name, in order, with
// pointers into s (to read them, or fill s from a metrics file).
func Counters[S any](s *S, names []Named[S]) []Counter {
	out := make([]Counter, len(names))
	for i, n := range names {
		out[i] = Counter{Name: n.Name, Metric: n.Metric, Value: n.Field(s)}
	}
	return out
}

// Snapshot returns an S whose fields, as names name them, hold the
// totals in live (indexed like names).
func Snapshot[S any](names []Named[S], live []atomic.Uint64) S {
	var s S
	for i, n := range names {
		*n.Field(&s) = live[i].Load()
	}
	return s
}

// CheckCounters reports an error unless counters names every uint64
// field of *stats exactly once (by address), with non-empty, unique
// names and metric paths, and nothing else. Devices test their lists
// with it, so a counter added to Stats cannot be missing from logs,
// dumps or metrics.
func CheckCounters(stats any, counters []Counter) error {
	v := reflect.ValueOf(stats)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("counters: %T is not a pointer to a struct", stats)
	}
	v = v.Elem()
	byAddr := map[*uint64]string{}
	names, metrics := map[string]bool{}, map[string]bool{}
	for _, c := range counters {
		switch {
		case c.Name == "" || c.Metric == "" || c.Value == nil:
			return fmt.Errorf("counters: incomplete entry %+v", c)
		case names[c.Name]:
			return fmt.Errorf("counters: name %q twice", c.Name)
		case metrics[c.Metric]:
			return fmt.Errorf("counters: metric %q twice", c.Metric)
		case byAddr[c.Value] != "":
			return fmt.Errorf("counters: %q and %q are the same field", byAddr[c.Value], c.Name)
		}
		for m := range metrics {
			if strings.HasPrefix(c.Metric, m+".") || strings.HasPrefix(m, c.Metric+".") {
				return fmt.Errorf("counters: metric %q inside %q", c.Metric, m)
			}
		}
		names[c.Name], metrics[c.Metric], byAddr[c.Value] = true, true, c.Name
	}
	fields := 0
	for i := range v.NumField() {
		f := v.Field(i)
		if f.Kind() != reflect.Uint64 {
			return fmt.Errorf("counters: %s.%s is %s, not uint64", v.Type(), v.Type().Field(i).Name, f.Type())
		}
		if byAddr[f.Addr().Interface().(*uint64)] == "" {
			return fmt.Errorf("counters: %s.%s has no name", v.Type(), v.Type().Field(i).Name)
		}
		fields++
	}
	if fields != len(counters) {
		return fmt.Errorf("counters: %d names for %d fields (a name points outside the struct)", len(counters), fields)
	}
	return nil
}
