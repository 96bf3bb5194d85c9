package boot_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flintvm/flint/boot"
	"github.com/flintvm/flint/internal/vmlinux"
)

// TestELFKernelReleaseDebian reads the release from the banner of the
// vmlinux inside the cached Debian cloud bzImage: the same release as the
// bzImage's setup header and the one fetch-kernels.sh recorded.
func TestELFKernelReleaseDebian(t *testing.T) {
	cache := filepath.Join("..", ".cache", "kernels", "cloud")
	bz, err := os.ReadFile(filepath.Join(cache, "vmlinuz"))
	kver, kerr := os.ReadFile(filepath.Join(cache, "kver"))
	if err != nil || kerr != nil {
		t.Skipf("no cached cloud kernel in %s (make setup fetches it)", cache)
	}
	elf, err := vmlinux.FromBzImage(bz)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSpace(string(kver))
	r, err := boot.ImageRelease(elf)
	if err != nil || r != want {
		t.Fatalf("ELF banner release %q, %v; want %q", r, err, want)
	}
	if r, err := boot.ImageRelease(bz); err != nil || r != want {
		t.Fatalf("bzImage release %q, %v; want %q", r, err, want)
	}
}
