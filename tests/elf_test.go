package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/flintvm/flint/internal/vmlinux"
)

// kernelLoadedRE matches flint's "kernel loaded" log line (--log-level info)
// and captures the format and the entry path taken.
var kernelLoadedRE = regexp.MustCompile(`msg="kernel loaded" format="([^"]+)" entry=(\w+)`)

// elfBoots makes the ELF vmlinux inside Debian's cloud bzImage in kernels
// (the kernel Firecracker users boot; into the cache) and returns, for
// TestStockKernelBoot's nested host, its boots into the marker initramfs
// and the check of each: the PVH entry (the vmlinux has the note), the
// 64-bit Linux entry forced with --kernel-entry linux64, and PVH once more
// with the kernel named by a Firecracker config file.
func elfBoots(t *testing.T, e *env, kernels map[string]string, initrd string, timeout time.Duration) ([]boot, map[string]func(*testing.T, *result)) {
	t.Helper()
	bz, err := os.ReadFile(kernels["cloud"])
	if err != nil {
		t.Fatal(err)
	}
	elf, err := vmlinux.FromBzImage(bz)
	if err != nil {
		t.Fatalf("vmlinux from %s: %v", kernels["cloud"], err)
	}
	dir := filepath.Join(e.cache, "vmlinux")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "vmlinux-cloud")
	if err := os.WriteFile(path, elf, 0o644); err != nil {
		t.Fatal(err)
	}
	base := boot{
		kernel:  path,
		initrd:  initrd,
		memMiB:  256,
		cmdline: guestCmdline(),
		timeout: timeout,
		// As the config cases: a good boot is never silent this long,
		// and a guest whose vCPU state the emulator lost (one run of
		// the config-file boot stopped printing mid-line at 6.6 s of
		// uptime and sat out the 300 s timeout) is dumped after 2 min,
		// which tells a lost state (rerun) from a flint hang.
		quiet: 120 * time.Second,
	}
	pvh, linux64, cfg := base, base, base
	pvh.name, pvh.cpus = "cloud-elf/pvh", 2
	pvh.flags = []string{"--log-level", "info"}
	linux64.name, linux64.cpus = "cloud-elf/linux64", 1
	linux64.flags = []string{"--log-level", "info", "--kernel-entry", "linux64"}
	// --kernel's value is the config's boot-source.kernel_image_path.
	cfg.name, cfg.cpus, cfg.wrap = "cloud-elf/config-file", 2, configFileWrap
	cfg.flags = pvh.flags
	checks := map[string]func(*testing.T, *result){}
	for _, c := range []struct {
		b     boot
		entry string
	}{{pvh, "pvh"}, {linux64, "linux64"}, {cfg, "pvh"}} {
		checks[c.b.name] = func(t *testing.T, r *result) { checkELFBoot(t, c.b, c.entry, r) }
	}
	return []boot{pvh, linux64, cfg}, checks
}

// configFileWrap runs a boot's flint command line (flint run --kernel K
// ...) as `flint run --config vm.json ...` without --kernel: vm.json is a
// config in Firecracker's shape (with the null and empty sections
// Firecracker writes) whose boot-source.kernel_image_path is K. The other
// flags stay; they give the values the config gives too.
var configFileWrap = []string{"sh", "-c", `flint=$1 kernel=$4; shift 4
cfg=${TMPDIR:-/tmp}/flint-elf-vm.json
printf '{"boot-source": {"kernel_image_path": "%s", "initrd_path": null}, "machine-config": {"vcpu_count": 2, "mem_size_mib": 256, "smt": false}, "drives": [], "network-interfaces": [], "balloon": null, "vsock": null}\n' "$kernel" >"$cfg"
exec "$flint" run --config "$cfg" "$@"`, "elf-config"}

// checkELFBoot: the boot ended with status 0 after the guest printed the
// marker with every vCPU, and flint entered the ELF kernel the way wanted.
func checkELFBoot(t *testing.T, b boot, entry string, r *result) {
	switch {
	case r == nil:
		t.Fatal("boot never started (the nested host ended first)")
	case r.unfinished:
		cutOff(t, "boot cut off (nested host "+strconv.Quote(r.host)+")", r)
	}
	t.Logf("flint exit status %d after %.1fs", r.rc, r.elapsed.Seconds())
	if r.timedOut || r.rc != 0 {
		t.Errorf("flint exit status %d (timed out: %v), want 0", r.rc, r.timedOut)
	}
	if m := kernelLoadedRE.FindStringSubmatch(r.output); m == nil || m[1] != "ELF vmlinux" || m[2] != entry {
		t.Errorf("flint's kernel log %q, want format \"ELF vmlinux\" entry=%s", m, entry)
	}
	if m := markerRE.FindStringSubmatch(r.output); m == nil {
		t.Error("guest never printed the FLINT-BOOT-OK marker")
	} else if n, _ := strconv.Atoi(m[1]); n != b.cpus {
		t.Errorf("guest saw %d CPUs, want %d", n, b.cpus)
	}
	if t.Failed() {
		t.Logf("last 60 lines of output:\n%s", tail(r.output, 60))
	}
}
