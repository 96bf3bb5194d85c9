package e2e

import (
	"fmt"
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

// TestELFKernelBoot boots the ELF vmlinux inside Debian's cloud kernel
// (the kernel Firecracker users boot, made here from the bzImage) through
// both entry paths into the marker initramfs: the PVH entry (the vmlinux
// has the note) and the 64-bit Linux entry (a copy whose note
// vmlinux.DisablePVH hid, as in a kernel built without CONFIG_PVH), and
// through PVH once more with the kernel named by a Firecracker config file.
func TestELFKernelBoot(t *testing.T) {
	e := setup(t)
	boots, check := elfBoots(t, e, e.kernels(t), e.initramfs(t, "marker", "--marker"), e.bootTimeout(t))
	results, err := e.runBoots(t, boots)
	if err != nil {
		t.Error(err)
	}
	check(t, results)
}

// elfBoots makes the vmlinux files from the cloud bzImage in kernels (into
// the cache) and returns the ELF boots, for one nested host session with
// other boots, and the check of their results.
func elfBoots(t *testing.T, e *env, kernels map[string]string, initrd string, timeout time.Duration) ([]boot, func(*testing.T, map[string]*result)) {
	t.Helper()
	bz, err := os.ReadFile(kernels["cloud"])
	if err != nil {
		t.Fatal(err)
	}
	pvh, err := vmlinux.FromBzImage(bz)
	if err != nil {
		t.Fatalf("vmlinux from %s: %v", kernels["cloud"], err)
	}
	linux64, err := vmlinux.DisablePVH(pvh)
	if err != nil {
		t.Fatalf("vmlinux from %s: %v", kernels["cloud"], err)
	}
	dir := filepath.Join(e.cache, "vmlinux")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{} // boot name -> entry path flint must log
	var boots []boot
	for _, c := range []struct {
		entry string
		elf   []byte
	}{{"pvh", pvh}, {"linux64", linux64}} {
		path := filepath.Join(dir, "vmlinux-cloud-"+c.entry)
		if err := os.WriteFile(path, c.elf, 0o644); err != nil {
			t.Fatal(err)
		}
		b := boot{
			name:    fmt.Sprintf("cloud-elf/%s", c.entry),
			kernel:  path,
			initrd:  initrd,
			cpus:    2,
			memMiB:  256,
			cmdline: guestCmdline(),
			timeout: timeout,
			flags:   []string{"--log-level", "info"},
			// As the config cases: a good boot is never silent this long,
			// and a guest whose vCPU state the emulator lost (one run of
			// the config-file boot stopped printing mid-line at 6.6 s of
			// uptime and sat out the 300 s timeout) is dumped after 2 min,
			// which tells a lost state (rerun) from a flint hang.
			quiet: 120 * time.Second,
		}
		boots = append(boots, b)
		want[b.name] = c.entry
	}
	// The PVH vmlinux again, named by a Firecracker config file's
	// boot-source.kernel_image_path instead of --kernel.
	cfg := boots[0]
	cfg.name, cfg.wrap = "cloud-elf/config-file", configFileWrap
	boots = append(boots, cfg)
	want[cfg.name] = "pvh"
	check := func(t *testing.T, results map[string]*result) {
		for _, b := range boots {
			t.Run(b.name, func(t *testing.T) { checkELFBoot(t, b, want[b.name], results[b.name]) })
		}
	}
	return boots, check
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
		t.Fatalf("boot cut off (nested host %q); its output so far:\n%s", r.host, tail(r.output, 60))
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
