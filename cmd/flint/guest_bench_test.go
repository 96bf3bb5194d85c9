package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/flintvm/flint/vmm"
)

// BenchmarkGuestPrepare: what command mode spends on its guest before the
// VM is built: resolving the modules of Debian 12's cloud kernel (with the
// host-root shares: virtio_mmio, virtio_console, virtiofs, overlay and
// their dependencies) and building the initramfs with the running binary
// (the test binary here, larger than flint) as /init (issue 12's target:
// <= 20 ms).
func BenchmarkGuestPrepare(b *testing.B) {
	dir := filepath.Join("..", "..", ".cache", "kernels", "cloud", "modules")
	if _, err := os.Stat(filepath.Join(dir, "kernel")); err != nil {
		b.Skipf("no cached cloud kernel module tree in %s (make setup fetches it)", dir)
	}
	b.ReportAllocs()
	for b.Loop() {
		g := guest{argv: []string{"true"}, modules: dir, cwd: "/"}
		cfg := vmm.Config{MemoryMiB: 256}
		if err := g.prepare(&cfg); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(cfg.Initrd)))
	}
}
