package vmm

import (
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/flintvm/flint/mem"
)

// TestTranslate walks hand-built 4- and 5-level page tables with 4 KiB,
// 2 MiB and 1 GiB pages, and refuses non-present entries.
func TestTranslate(t *testing.T) {
	m, err := mem.New(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	mc := &Machine{mem: m}
	put := func(table, index, entry uint64) {
		t.Helper()
		if err := m.WriteU64(table+8*index, entry); err != nil {
			t.Fatal(err)
		}
	}
	const p, ps = 1, 1 << 7
	va := uint64(0xffff_ffff_8123_4567) // kernel text: PML4 511, PDPT 510, PD 9, PT 0x34
	idx := func(shift uint) uint64 { return (va >> shift) & 0x1ff }
	// 4-level, 4 KiB page.
	put(0x1000, idx(39), 0x2000|p)
	put(0x2000, idx(30), 0x3000|p)
	put(0x3000, idx(21), 0x4000|p)
	put(0x4000, idx(12), 0x50_0000|p)
	if pa, ok := mc.translate(0x1000, 0, va); !ok || pa != 0x50_0567 {
		t.Errorf("4 KiB page: %#x %v, want 0x500567", pa, ok)
	}
	// 2 MiB page at the PD level.
	put(0x3000, idx(21), 0x60_0000|p|ps)
	if pa, ok := mc.translate(0x1000, 0, va); !ok || pa != 0x60_0000|va&0x1f_ffff {
		t.Errorf("2 MiB page: %#x %v", pa, ok)
	}
	// 1 GiB page at the PDPT level.
	put(0x2000, idx(30), 0x4000_0000|p|ps)
	if pa, ok := mc.translate(0x1000, 0, va); !ok || pa != 0x4000_0000|va&0x3fff_ffff {
		t.Errorf("1 GiB page: %#x %v", pa, ok)
	}
	// 5-level (CR4.LA57): one more table on top.
	put(0x8000, (va>>48)&0x1ff, 0x1000|p)
	if pa, ok := mc.translate(0x8000, 1<<12, va); !ok || pa != 0x4000_0000|va&0x3fff_ffff {
		t.Errorf("5-level: %#x %v", pa, ok)
	}
	// Not present, and tables outside guest memory.
	put(0x2000, idx(30), 0)
	if _, ok := mc.translate(0x1000, 0, va); ok {
		t.Error("non-present entry translated")
	}
	put(0x2000, idx(30), 0xff_0000_0000|p)
	if _, ok := mc.translate(0x1000, 0, va); ok {
		t.Error("table outside guest memory translated")
	}
	// readVirt crosses pages and stops at an unmapped one.
	put(0x2000, idx(30), 0x3000|p)
	put(0x3000, idx(21), 0x4000|p)
	put(0x4000, idx(12), 0x50_0000|p)
	put(0x4000, idx(12)+1, 0x70_0000|p)
	if err := m.Write(0x50_0ffe, []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	if err := m.Write(0x70_0000, []byte{3, 4}); err != nil {
		t.Fatal(err)
	}
	var b [4]byte
	if n := mc.readVirt(0x1000, 0, va&^0xfff+0xffe, b[:]); n != 4 || b != [4]byte{1, 2, 3, 4} {
		t.Errorf("readVirt across pages: %d %v", n, b)
	}
	if n := mc.readVirt(0x1000, 0, va&^0xfff+0x1ffe, b[:]); n != 2 {
		t.Errorf("readVirt into an unmapped page read %d bytes, want 2", n)
	}
}

// TestPageTablesInRAM: with paging on, CR3 must point into guest RAM
// (the hole and beyond the end are impossible); with paging off, anything
// goes.
func TestPageTablesInRAM(t *testing.T) {
	m, err := mem.New(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	mc := &Machine{mem: m}
	const pg = 1 << 31
	for _, c := range []struct {
		cr0, cr3 uint64
		want     bool
	}{
		{pg, 0x1000, true},
		{pg, 0x3fff000 | 0x18, true}, // low bits are flags (PCD/PWT, PCID)
		{pg, 64 << 20, false},        // just past the end of RAM
		{pg, 0x7d5d4000, false},      // what a lost L2 state showed
		{0, 0x7d5d4000, true},        // paging off: CR3 unused
	} {
		if got := mc.pageTablesInRAM(c.cr0, c.cr3); got != c.want {
			t.Errorf("cr0 %#x cr3 %#x: %v, want %v", c.cr0, c.cr3, got, c.want)
		}
	}
}

// TestUnmappedImpossible: a RIP its page tables do not map proves a lost
// state only when a second look, about recheckAfter later and not too
// late, finds the same RIP and CR3.
func TestUnmappedImpossible(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	first := unmappedRIP{rip: 0xffffffffc052120c, cr3: 0x1a248000, at: t0}
	for _, c := range []struct {
		name string
		prev unmappedRIP
		now  unmappedRIP
		want bool
	}{
		{"first look", unmappedRIP{}, first, false},
		{"same state a second later", first, unmappedRIP{first.rip, first.cr3, at(time.Second)}, true},
		{"same state 3 s later (two SIGUSR1 dumps)", first, unmappedRIP{first.rip, first.cr3, at(3 * time.Second)}, true},
		{"too soon: the vCPU may not have run", first, unmappedRIP{first.rip, first.cr3, at(100 * time.Millisecond)}, false},
		{"too late to compare", first, unmappedRIP{first.rip, first.cr3, at(time.Minute)}, false},
		{"the guest moved on", first, unmappedRIP{first.rip + 2, first.cr3, at(time.Second)}, false},
		{"another address space", first, unmappedRIP{first.rip, first.cr3 + 0x1000, at(time.Second)}, false},
	} {
		if _, got := unmappedImpossible(c.prev, c.now); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// TestDumpSignalAfterStop: a SIGUSR1 after the machine stopped is
// ignored; with its default action it would end this process.
func TestDumpSignalAfterStop(t *testing.T) {
	stop := make(chan struct{})
	dumped := make(chan struct{}, 1)
	onDumpSignal(stop, func() { dumped <- struct{}{} })
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-dumped:
	case <-time.After(5 * time.Second):
		t.Fatal("no dump for a SIGUSR1 while running")
	}
	close(stop)
	// The goroutine ignores SIGUSR1 once it has seen the stop.
	for end := time.Now().Add(5 * time.Second); !signal.Ignored(syscall.SIGUSR1); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("SIGUSR1 not ignored after the stop")
		}
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // still alive: the signal was ignored
	signal.Reset(syscall.SIGUSR1)
}
