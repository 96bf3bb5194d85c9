package initramfs

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// cachedTree returns the module tree of the cached Debian kernel of flavour
// ("cloud" or "amd64") and its release, skipping the test when the cache
// (make setup fills it) is absent.
func cachedTree(t testing.TB, flavour string) (dir, release string) {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	// This package sits two levels below the module root.
	cache := filepath.Join(wd, "..", "..", ".cache", "kernels", flavour)
	kver, err := os.ReadFile(filepath.Join(cache, "kver"))
	release = strings.TrimSpace(string(kver))
	dir = filepath.Join(cache, "modules")
	if err != nil || !fileExists(filepath.Join(dir, "kernel")) {
		t.Skipf("no cached %s kernel module tree in %s (make setup fetches it)", flavour, cache)
	}
	return dir, release
}

// wantCloud is the closure of DefaultModules in Debian 12's cloud kernel.
var wantCloud = []string{
	"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
	"virtio_mmio", "failover", "net_failover", "virtio_net", "virtio_console", "fuse",
	"virtiofs", "overlay", "vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport",
}

// checkOrder fails unless every module in order comes after the modules
// that modules.dep (the depmod's answer) says it needs.
func checkOrder(t *testing.T, dir string, order []Module) {
	t.Helper()
	dep, err := readModulesDep(dir, filepath.Join(dir, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range order {
		if seen[m.Name] {
			t.Errorf("%s loaded twice", m.Name)
		}
		_, deps, ok, _ := dep.lookup(m.Name)
		if !ok {
			t.Errorf("%s is not in modules.dep", m.Name)
		}
		for _, d := range deps {
			if !seen[ModuleName(d)] {
				t.Errorf("%s comes before its dependency %s", m.Name, ModuleName(d))
			}
		}
		seen[m.Name] = true
	}
}

func names(ms []Module) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

// TestResolveRealTrees resolves the command-mode modules in both Debian
// kernels' trees, once from modules.dep and once from each module's
// .modinfo as for a tree without modules.dep: both orders must satisfy
// depmod's dependencies and hold the same modules.
func TestResolveRealTrees(t *testing.T) {
	for _, flavour := range []string{"cloud", "amd64"} {
		t.Run(flavour, func(t *testing.T) {
			dir, _ := cachedTree(t, flavour)
			fromDep, err := resolve(dir, DefaultModules, true)
			if err != nil {
				t.Fatal(err)
			}
			fromInfo, err := resolve(dir, DefaultModules, false)
			if err != nil {
				t.Fatal(err)
			}
			checkOrder(t, dir, fromDep)
			checkOrder(t, dir, fromInfo)
			a, b := names(fromDep), names(fromInfo)
			slices.Sort(a)
			slices.Sort(b)
			if !slices.Equal(a, b) {
				t.Errorf("modules.dep gives %v, .modinfo gives %v", a, b)
			}
			if flavour == "cloud" {
				want := slices.Clone(wantCloud)
				slices.Sort(want)
				if !slices.Equal(a, want) {
					t.Errorf("cloud closure %v, want %v", a, want)
				}
			}
			for _, m := range fromInfo {
				if !strings.HasPrefix(m.Path, dir) || !strings.HasSuffix(m.Path, ".ko") {
					t.Errorf("%s: path %s", m.Name, m.Path)
				}
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	dir, _ := cachedTree(t, "cloud")
	for _, useDep := range []bool{true, false} {
		_, err := resolve(dir, []string{"virtio_net", "no_such_module"}, useDep)
		if !errors.Is(err, ErrUnknownModule) || !strings.Contains(err.Error(), `"no_such_module"`) || !strings.Contains(err.Error(), dir) {
			t.Errorf("unknown module (modules.dep %v): %v", useDep, err)
		}
		for _, bad := range []string{"", "kernel/fs/fuse/fuse", "fuse.ko"} {
			if _, err := resolve(dir, []string{bad}, useDep); !errors.Is(err, ErrUnknownModule) {
				t.Errorf("name %q: %v", bad, err)
			}
		}
	}
	// '-' and '_' name the same module; a built-in module needs nothing.
	ms, err := Resolve(dir, []string{"virtio-mmio", "binfmt_script", "virtio_mmio"})
	if err != nil || !slices.Equal(names(ms), []string{"virtio_ring", "virtio", "virtio_mmio"}) {
		t.Errorf("virtio-mmio + a built-in: %v, %v", names(ms), err)
	}
	if _, err := Resolve(filepath.Join(dir, "modules.dep"), nil); !errors.Is(err, ErrNoModuleTree) {
		t.Errorf("a file as the tree: %v", err)
	}
}

// writeTree makes a module tree in a temporary directory from files
// (relative path -> contents).
func writeTree(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for p, data := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestResolveModulesDepFile(t *testing.T) {
	elfStub := append([]byte(nil), magicELF...)
	dir := writeTree(t, map[string][]byte{
		"modules.dep":     []byte("kernel/a.ko: kernel/c.ko kernel/b-x.ko\nkernel/b-x.ko: kernel/c.ko\nkernel/c.ko:\n\nkernel/cyc1.ko: kernel/cyc2.ko\nkernel/cyc2.ko: kernel/cyc1.ko\nkernel/gone.ko:\n"),
		"modules.builtin": []byte("kernel/fs/ext4/ext4.ko\n"),
		"kernel/a.ko":     elfStub, "kernel/b-x.ko": elfStub, "kernel/c.ko": elfStub,
	})
	ms, err := Resolve(dir, []string{"a", "ext4"})
	if err != nil || !slices.Equal(names(ms), []string{"c", "b_x", "a"}) {
		t.Fatalf("Resolve = %v, %v; want c b_x a", names(ms), err)
	}
	if ms[1].Path != filepath.Join(dir, "kernel/b-x.ko") {
		t.Errorf("b_x at %s", ms[1].Path)
	}
	if _, err := Resolve(dir, []string{"cyc1"}); !errors.Is(err, ErrModuleDeps) || !strings.Contains(err.Error(), "cyc1 -> cyc2 -> cyc1") {
		t.Errorf("cycle: %v", err)
	}
	if _, err := Resolve(dir, []string{"gone"}); !errors.Is(err, ErrUnknownModule) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("modules.dep naming a missing file: %v", err)
	}
	bad := writeTree(t, map[string][]byte{"modules.dep": []byte("no colon here\n")})
	if _, err := Resolve(bad, []string{"x"}); !errors.Is(err, ErrModuleDeps) {
		t.Errorf("malformed modules.dep: %v", err)
	}
	// A modules.dep too large to be one is an error, not a parse of all of it.
	huge := writeTree(t, map[string][]byte{"modules.dep": []byte("kernel/a.ko:\n")})
	if err := os.Truncate(filepath.Join(huge, "modules.dep"), maxListFile+1); err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve(huge, []string{"a"}); !errors.Is(err, ErrModuleDeps) || !strings.Contains(err.Error(), "more than") {
		t.Errorf("huge modules.dep: %v", err)
	}
}

// compress returns data compressed as kind ("xz", "zst" or "gz"), with the
// command-line tool when it is installed (as distributions make .ko.xz and
// .ko.zst files), otherwise with the library's encoder.
func compress(t testing.TB, kind string, data []byte) []byte {
	t.Helper()
	tool := map[string][]string{"xz": {"xz", "-c", "--check=crc32", "--lzma2=dict=1MiB"}, "zst": {"zstd", "-q", "-c"}, "gz": {"gzip", "-c", "-n"}}[kind]
	if _, err := exec.LookPath(tool[0]); err == nil {
		cmd := exec.Command(tool[0], tool[1:]...)
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", tool[0], err)
		}
		return out
	}
	var buf bytes.Buffer
	var err error
	switch kind {
	case "xz":
		var w *xz.Writer
		if w, err = xz.NewWriter(&buf); err == nil {
			_, err = w.Write(data)
			err = errors.Join(err, w.Close())
		}
	case "zst":
		var w *zstd.Encoder
		if w, err = zstd.NewWriter(&buf); err == nil {
			_, err = w.Write(data)
			err = errors.Join(err, w.Close())
		}
	case "gz":
		w := gzip.NewWriter(&buf)
		_, err = w.Write(data)
		err = errors.Join(err, w.Close())
	}
	if err != nil {
		t.Fatalf("%s encoder: %v", kind, err)
	}
	return buf.Bytes()
}

// compressedTree copies the cloud kernel's virtio_net closure into a tree
// without modules.dep, each module compressed differently, one file named
// with '-' instead of '_'.
func compressedTree(t testing.TB) (dir string, plain map[string][]byte) {
	src, _ := cachedTree(t, "cloud")
	files := map[string][]byte{}
	plain = map[string][]byte{}
	kinds := map[string]string{"virtio_ring": "xz", "virtio": "zst", "failover": "gz", "net_failover": "xz", "virtio_net": ""}
	for name, kind := range kinds {
		matches, _ := filepath.Glob(filepath.Join(src, "kernel", "*", "*", name+".ko"))
		if len(matches) != 1 {
			t.Fatalf("%s: found %v", name, matches)
		}
		data, err := os.ReadFile(matches[0])
		if err != nil {
			t.Fatal(err)
		}
		plain[name] = data
		rel := "kernel/" + strings.ReplaceAll(name, "_", "-") + ".ko"
		if kind != "" {
			rel += "." + kind
			data = compress(t, kind, data)
		}
		files[rel] = data
	}
	tmp := t.TempDir()
	for rel, data := range files {
		p := filepath.Join(tmp, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return tmp, plain
}

func TestResolveCompressedTree(t *testing.T) {
	dir, plain := compressedTree(t)
	ms, err := Resolve(dir, []string{"virtio_net"})
	if err != nil {
		t.Fatal(err)
	}
	got := names(ms)
	if len(got) != 5 || got[4] != "virtio_net" || slices.Index(got, "virtio_ring") > slices.Index(got, "virtio") ||
		slices.Index(got, "failover") > slices.Index(got, "net_failover") {
		t.Fatalf("order %v", got)
	}
	for _, m := range ms {
		data, err := ReadModule(m.Path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, plain[m.Name]) {
			t.Errorf("%s (%s): decompressed %d bytes differ from the original %d", m.Name, m.Path, len(data), len(plain[m.Name]))
		}
	}

	// With a modules.order naming the uncompressed files and leaving one
	// module out (found by the walk), and an updates/ copy of another that
	// the walk prefers, the answer is the same files but that one.
	order := "kernel/virtio-ring.ko\nkernel/virtio.ko\nkernel/failover.ko\nkernel/net-failover.ko\n"
	os.WriteFile(filepath.Join(dir, "modules.order"), []byte(order), 0o644)
	os.MkdirAll(filepath.Join(dir, "updates"), 0o755)
	os.WriteFile(filepath.Join(dir, "updates", "virtio_net.ko"), plain["virtio_net"], 0o644)
	again, err := Resolve(dir, []string{"virtio_net"})
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range again {
		want := ms[i].Path
		if m.Name == "virtio_net" {
			want = filepath.Join(dir, "updates", "virtio_net.ko")
		}
		if m.Name != ms[i].Name || m.Path != want {
			t.Errorf("with modules.order: %d: %+v, want %s at %s", i, m, ms[i].Name, want)
		}
	}
}

func TestReadModuleErrors(t *testing.T) {
	elfData := append(append([]byte(nil), magicELF...), make([]byte, 60)...)
	xzData := compress(t, "xz", elfData)
	gzNotELF := compress(t, "gz", []byte("not an ELF file at all"))
	dir := writeTree(t, map[string][]byte{
		"plain.ko":      []byte("text"),
		"liar.ko.xz":    compress(t, "gz", elfData),
		"cut.ko.xz":     xzData[:len(xzData)-8],
		"garbage.ko.gz": append(append([]byte(nil), magicGzip...), "garbage!"...),
		"notelf.ko.gz":  gzNotELF,
		"empty.ko.zst":  nil,
		"ok.ko.zst":     compress(t, "zst", elfData),
	})
	for _, name := range []string{"plain.ko", "liar.ko.xz", "cut.ko.xz", "garbage.ko.gz", "notelf.ko.gz", "empty.ko.zst"} {
		if _, err := ReadModule(filepath.Join(dir, name)); !errors.Is(err, ErrBadModule) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v, want ErrBadModule naming the file", name, err)
		}
	}
	if data, err := ReadModule(filepath.Join(dir, "ok.ko.zst")); err != nil || !bytes.Equal(data, elfData) {
		t.Errorf("ok.ko.zst: %d bytes, %v", len(data), err)
	}
	if _, err := ReadModule(filepath.Join(dir, "missing.ko")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing module: %v", err)
	}
	// A stub that is ELF-looking but has no .modinfo fails resolution clearly.
	if _, err := resolve(writeTree(t, map[string][]byte{"kernel/s.ko": elfData}), []string{"s"}, false); !errors.Is(err, ErrBadModule) {
		t.Errorf("module without .modinfo: %v", err)
	}
}

func TestFindTree(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr/lib/modules/6.1.0-a"), 0o755)
	os.MkdirAll(filepath.Join(root, "lib/modules/6.1.0-b"), 0o755)
	os.WriteFile(filepath.Join(root, "lib/modules/file"), nil, 0o644)
	if p, err := FindTree(root, "6.1.0-b"); err != nil || p != filepath.Join(root, "lib/modules/6.1.0-b") {
		t.Errorf("lib/modules: %q, %v", p, err)
	}
	if p, err := FindTree(root, "6.1.0-a"); err != nil || p != filepath.Join(root, "usr/lib/modules/6.1.0-a") {
		t.Errorf("usr/lib/modules: %q, %v", p, err)
	}
	for _, rel := range []string{"6.1.0-c", "file", "..", "", "a/b"} {
		_, err := FindTree(root, rel)
		if !errors.Is(err, ErrNoModuleTree) {
			t.Errorf("release %q: %v", rel, err)
		}
	}
	_, err := FindTree(root, "6.1.0-c")
	for _, want := range []string{filepath.Join(root, "lib/modules/6.1.0-c"), filepath.Join(root, "usr/lib/modules/6.1.0-c"), "--modules DIR"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"virtio-net": "virtio_net", "kernel/drivers/net/virtio_net.ko": "virtio_net",
		"a/b/net-failover.ko.xz": "net_failover", "x.ko.zst": "x", "y.ko.gz": "y", "plain": "plain",
	} {
		if got := ModuleName(in); got != want {
			t.Errorf("ModuleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func BenchmarkResolveModinfo(b *testing.B) {
	dir, _ := cachedTree(b, "cloud")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := resolve(dir, DefaultModules, false); err != nil {
			b.Fatal(err)
		}
	}
}
