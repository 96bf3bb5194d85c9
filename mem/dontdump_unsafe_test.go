package mem

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// The test below reads a region's host address with unsafe.Pointer only to
// find its mapping in /proc/self/smaps; it never dereferences it.

// TestGuestRAMNotDumped: every region New maps is marked MADV_DONTDUMP
// (smaps' VmFlags "dd"), so a crashing Flint does not write the guest's
// memory into a core file.
func TestGuestRAMNotDumped(t *testing.T) {
	m, err := New(4 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	for _, r := range m.regions {
		start := fmt.Sprintf("%x-", uintptr(unsafe.Pointer(&r.host[0])))
		i := strings.Index(string(smaps), "\n"+start)
		if i < 0 {
			t.Fatalf("region at %#x: no mapping starting at %s in smaps", r.GuestAddr, start)
		}
		rest := string(smaps[i+1:])
		j := strings.Index(rest, "VmFlags:")
		if j < 0 {
			t.Fatal("smaps without VmFlags")
		}
		flags := strings.Fields(strings.SplitN(rest[j+len("VmFlags:"):], "\n", 2)[0])
		if !slices.Contains(flags, "dd") {
			t.Errorf("region at %#x: VmFlags %v, want dd (MADV_DONTDUMP)", r.GuestAddr, flags)
		}
	}
}
