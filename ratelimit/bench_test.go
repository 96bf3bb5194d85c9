package ratelimit

import (
	"testing"
	"time"
)

// BenchmarkConsume measures one Consume on the real clock: granted
// (unlimited-ish buckets) and refused (empty buckets). Both must report
// 0 allocs/op.
func BenchmarkConsume(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"granted", Config{Bandwidth: BucketConfig{Size: 1 << 60, RefillTime: 1}, Ops: BucketConfig{Size: 1 << 60, RefillTime: 1}}},
		{"refused", Config{Bandwidth: BucketConfig{Size: 1, RefillTime: MaxRefillTime}, Ops: BucketConfig{Size: 1, RefillTime: MaxRefillTime}}},
		{"unlimited", Config{}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l, err := New(bc.cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			l.Consume(4096)
			b.ReportAllocs()
			for b.Loop() {
				l.Consume(4096)
			}
		})
	}
}

func TestConsumeAllocs(t *testing.T) {
	l, _ := New(Config{Bandwidth: BucketConfig{Size: 100, RefillTime: 1}, Ops: BucketConfig{Size: 1, RefillTime: 1000}}, nil)
	var sink time.Duration
	if a := testing.AllocsPerRun(1000, func() {
		_, w := l.Consume(4096)
		sink += w
	}); a != 0 {
		t.Fatalf("Consume allocates %v times", a)
	}
}
