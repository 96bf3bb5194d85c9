package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProbeNeverCreates: a missing device stays missing, a regular file in
// its place is named as such, and neither is usable.
func TestProbeNeverCreates(t *testing.T) {
	dir := t.TempDir()
	cpuinfo := filepath.Join(dir, "cpuinfo")
	if err := os.WriteFile(cpuinfo, []byte("processor\t: 0\nflags\t\t: fpu sse2 svm lm\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dev := filepath.Join(dir, "kvm")
	k := probe(dev, cpuinfo, filepath.Join(dir, "no-pvm"))
	if k.Usable || !strings.Contains(k.Why, "no "+dev+" (") {
		t.Errorf("missing device: %+v", k)
	}
	if _, err := os.Lstat(dev); !os.IsNotExist(err) {
		t.Fatalf("probe created %s (%v)", dev, err)
	}
	if !k.HWVirt || k.PVM {
		t.Errorf("svm flag, no PVM module: %+v", k)
	}

	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	k = probe(dev, cpuinfo, dir) // dir exists: stands for /sys/module/kvm_pvm
	if k.Usable || !strings.Contains(k.Why, "not a character device") {
		t.Errorf("regular file: %+v", k)
	}
	if !k.PVM {
		t.Errorf("PVM module present: %+v", k)
	}
}

// TestProbeOtherCharDevice: a character device that is not KVM does not
// answer KVM_GET_API_VERSION.
func TestProbeOtherCharDevice(t *testing.T) {
	dir := t.TempDir()
	cpuinfo := filepath.Join(dir, "cpuinfo")
	if err := os.WriteFile(cpuinfo, []byte("flags\t\t: fpu sse2 lm\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	k := probe(os.DevNull, cpuinfo, filepath.Join(dir, "no-pvm"))
	if k.Usable || !strings.Contains(k.Why, "KVM_GET_API_VERSION") {
		t.Errorf("/dev/null: %+v", k)
	}
	if k.HWVirt || !strings.Contains(k.HWVirtWhy, "no vmx/svm") {
		t.Errorf("no vmx/svm: %+v", k)
	}
}

func TestRequireWords(t *testing.T) {
	for _, c := range []struct {
		require, ci string
		all, kvm    bool
	}{
		{"", "", false, false},
		{"all", "", true, false},
		{" kvm , ALL", "", true, true},
		{"kvm", "", false, true},
		{"", "true", true, false},
		{"", "false", false, false},
		{"", "0", false, false},
	} {
		t.Setenv("FLINT_TEST_REQUIRE", c.require)
		t.Setenv("CI", c.ci)
		if RequireAll() != c.all || requireKVM() != c.kvm {
			t.Errorf("FLINT_TEST_REQUIRE=%q CI=%q: all=%v kvm=%v, want %v %v",
				c.require, c.ci, RequireAll(), requireKVM(), c.all, c.kvm)
		}
	}
}

// TestThisMachine logs what the probe finds here (for the record) and
// checks that the two answers agree with it.
func TestThisMachine(t *testing.T) {
	k := Probe()
	tiny, why := CanRunTinyGuests()
	stock, stockWhy := CanBootStockKernels()
	t.Logf("KVM here: %s; tiny guests: %v %s; stock kernels: %v %s", k.Kind(), tiny, why, stock, stockWhy)
	if tiny != k.Usable || (stock && !tiny) || (stock && k.PVM) {
		t.Errorf("inconsistent: %+v tiny=%v stock=%v", k, tiny, stock)
	}
	if _, err := os.Lstat(DevicePath); err != nil && !os.IsNotExist(err) {
		t.Errorf("stat %s: %v", DevicePath, err)
	}
}
