package main

import (
	"fmt"
	"slices"
	"time"
)

// summary is udprr's output line: rr= round trips measured, lost=
// requests without an echo, then (with at least one trip) the round
// trip's min_us=, p50_us=, p90_us=, p99_us=, max_us= and mean_us= in
// microseconds, and rate= round trips per second of the whole run.
func summary(rtts []time.Duration, lost int, elapsed time.Duration) string {
	s := fmt.Sprintf("rr=%d lost=%d", len(rtts), lost)
	if len(rtts) == 0 {
		return s
	}
	sorted := slices.Clone(rtts)
	slices.Sort(sorted)
	var sum time.Duration
	for _, d := range sorted {
		sum += d
	}
	us := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Microsecond)) }
	s += fmt.Sprintf(" min_us=%s p50_us=%s p90_us=%s p99_us=%s max_us=%s mean_us=%s",
		us(sorted[0]), us(quantile(sorted, 50)), us(quantile(sorted, 90)), us(quantile(sorted, 99)),
		us(sorted[len(sorted)-1]), us(sum/time.Duration(len(sorted))))
	if elapsed > 0 {
		s += fmt.Sprintf(" rate=%.0f", float64(len(rtts))/elapsed.Seconds())
	}
	return s
}

// quantile is the nearest-rank p-th percentile of sorted (not empty).
func quantile(sorted []time.Duration, p int) time.Duration {
	k := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	return sorted[max(k, 1)-1]
}
