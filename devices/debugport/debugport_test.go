package debugport

import (
	"sync"
	"testing"
	"time"
)

func TestRecordsAndFirst(t *testing.T) {
	start := time.Now()
	p := New(start, 4)
	if _, ok := p.First(); ok {
		t.Fatal("First before any write")
	}
	select {
	case <-p.FirstWritten():
		t.Fatal("FirstWritten closed early")
	default:
	}
	var b [1]byte
	p.Read(0, b[:])
	if b[0] != 0 {
		t.Fatalf("initial read %#x", b[0])
	}
	for i := 1; i <= 10; i++ {
		p.Write(0, []byte{byte(i)})
	}
	<-p.FirstWritten()
	first, ok := p.First()
	if !ok || first.Value != 1 || first.Width != 1 {
		t.Fatalf("First = %+v %v", first, ok)
	}
	if first.At < 0 || first.At > time.Since(start) {
		t.Fatalf("First.At %v out of range", first.At)
	}
	recs := p.Records()
	if len(recs) != 4 || p.Total() != 10 {
		t.Fatalf("%d records, total %d", len(recs), p.Total())
	}
	for i, r := range recs {
		if r.Value != uint32(7+i) {
			t.Fatalf("record %d = %d, want %d", i, r.Value, 7+i)
		}
		if i > 0 && r.At < recs[i-1].At {
			t.Fatal("timestamps go backwards")
		}
	}
	p.Read(0, b[:])
	if b[0] != 10 {
		t.Fatalf("read %d, want last written 10", b[0])
	}
}

func TestPartialRingAndWideWrites(t *testing.T) {
	p := New(time.Now(), 0)
	p.Write(0, []byte{0x34, 0x12})
	p.Write(0, []byte{0x78, 0x56, 0x34, 0x12})
	p.Write(0, nil)
	recs := p.Records()
	if len(recs) != 2 || recs[0].Value != 0x1234 || recs[0].Width != 2 || recs[1].Value != 0x12345678 || recs[1].Width != 4 {
		t.Fatalf("records %+v", recs)
	}
	if cap(p.ring) != DefaultCapacity {
		t.Fatalf("capacity %d", cap(p.ring))
	}
}

func TestBoundedUnderFlood(t *testing.T) {
	p := New(time.Now(), 16)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10000; i++ {
				p.Write(0, []byte{byte(i)})
				if i%1000 == 0 {
					p.Records()
				}
			}
		}()
	}
	wg.Wait()
	if p.Total() != 40000 || len(p.Records()) != 16 || cap(p.ring) != 16 {
		t.Fatalf("total %d, %d records, cap %d", p.Total(), len(p.Records()), cap(p.ring))
	}
}

func BenchmarkWrite(b *testing.B) {
	p := New(time.Now(), 64)
	data := []byte{0x42}
	b.ReportAllocs()
	for b.Loop() {
		p.Write(0, data)
	}
}
