package ratelimit

import (
	"encoding/binary"
	"math/big"
	"testing"
	"time"
)

// FuzzTokenBucket runs a fuzzed sequence of (advance, request) steps
// against a fuzzed bucket and checks the invariants: the budget never
// exceeds the size, the burst never grows, a refusal's wait is exact (the
// request goes after it and not 1 ns before), and the tokens granted never
// exceed the size plus the burst plus what the elapsed time earned.
func FuzzTokenBucket(f *testing.F) {
	f.Add(uint64(1000), uint64(0), uint64(100), []byte{1, 0, 0, 0, 0, 0, 0, 0, 200, 3, 0, 0, 0, 0, 0, 0})
	f.Add(uint64(3), uint64(7), uint64(1), []byte("\xff\xff\x00\x00\x00\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00"))
	f.Add(uint64(1<<40), uint64(1<<20), uint64(MaxRefillTime), []byte{})
	f.Fuzz(func(t *testing.T, size, burst, refill uint64, steps []byte) {
		cfg := BucketConfig{Size: size % (MaxSize + 1), OneTimeBurst: burst % (MaxSize + 1), RefillTime: refill%MaxRefillTime + 1}
		now := time.Duration(0)
		b, err := NewTokenBucket(cfg, now)
		if err != nil {
			t.Fatal(err)
		}
		granted := new(big.Int)
		for len(steps) >= 16 {
			adv := time.Duration(binary.LittleEndian.Uint64(steps) % uint64(time.Hour))
			n := binary.LittleEndian.Uint64(steps[8:])
			if steps[15]&0x80 == 0 && cfg.Size != 0 {
				n %= 2*cfg.Size + 1 // mostly requests near the size
			}
			steps = steps[16:]
			now += adv
			before := b
			ok, wait := b.Consume(n, now)
			if b.Unlimited() {
				if !ok {
					t.Fatal("unlimited bucket refused")
				}
				continue
			}
			if b.budget > int64(b.size) || b.burst > before.burst {
				t.Fatalf("budget %d > size %d or burst grew %d -> %d", b.budget, b.size, before.burst, b.burst)
			}
			if ok {
				granted.Add(granted, new(big.Int).SetUint64(min(n, MaxSize+before.burst)))
				continue
			}
			if wait <= 0 || b.budget != before.budget && before.last == now {
				t.Fatalf("refusal with wait %v changed budget %d -> %d", wait, before.budget, b.budget)
			}
			if wait < maxWait {
				early, late := b, b
				if ok, _ := early.Consume(n, now+wait-1); ok {
					t.Fatalf("n=%d went 1ns before the wait %v", n, wait)
				}
				if now+wait > now { // no overflow
					if ok, w := late.Consume(n, now+wait); !ok {
						t.Fatalf("n=%d refused after the wait %v (again %v)", n, wait, w)
					}
				}
			}
		}
		if b.Unlimited() {
			return
		}
		// granted + budget + burst <= size + burst0 + now*size/refillNs.
		lhs := new(big.Int).Add(granted, big.NewInt(b.budget))
		lhs.Add(lhs, new(big.Int).SetUint64(b.burst))
		earned := new(big.Int).Mul(big.NewInt(int64(now)), new(big.Int).SetUint64(cfg.Size))
		earned.Quo(earned, new(big.Int).SetUint64(cfg.RefillTime*uint64(time.Millisecond)))
		rhs := new(big.Int).SetUint64(cfg.Size)
		rhs.Add(rhs, new(big.Int).SetUint64(cfg.OneTimeBurst))
		rhs.Add(rhs, earned)
		if lhs.Cmp(rhs) > 0 {
			t.Fatalf("granted %v + budget %d + burst %d exceeds size+burst+earned %v", granted, b.budget, b.burst, rhs)
		}
	})
}
