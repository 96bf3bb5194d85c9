package initramfs

import (
	"bytes"
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// entryMap indexes entries by name, failing on duplicates or on an entry
// that comes before its parent directory (the kernel creates no parents).
func entryMap(t *testing.T, es []testEntry) map[string]testEntry {
	t.Helper()
	m := map[string]testEntry{}
	for _, e := range es {
		if _, dup := m[e.Name]; dup {
			t.Errorf("%s twice", e.Name)
		}
		if dir := path.Dir(e.Name); dir != "." && m[dir].Mode&^permMask != modeDir {
			t.Errorf("%s comes before its directory %s", e.Name, dir)
		}
		m[e.Name] = e
	}
	return m
}

func TestBuildCloudModules(t *testing.T) {
	dir, _ := cachedTree(t, "cloud")
	mods, err := Resolve(dir, DefaultModules)
	if err != nil {
		t.Fatal(err)
	}
	agent := bytes.Repeat([]byte("agent!"), 1001)
	hostFile := filepath.Join(t.TempDir(), "conf")
	os.WriteFile(hostFile, []byte("from the host"), 0o600)
	user := gzipped(t, "etc/user", "user initrd")

	var img bytes.Buffer
	n, err := Build(&img, Options{
		Init:    agent,
		Modules: mods,
		Files: []File{
			{Path: "/etc/flint/cmd", Data: []byte("uname -r")},
			{Path: "flint/host.conf", Perm: 0o600, HostPath: hostFile},
		},
		UserInitrd: bytes.NewReader(user),
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(img.Len()) {
		t.Fatalf("Build says %d bytes, wrote %d", n, img.Len())
	}
	es, err := kernelSplit(img.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if es[0].Name != "etc/user" {
		t.Fatalf("first entry %q, want the user initrd's", es[0].Name)
	}
	m := entryMap(t, es[1:])
	if e := m["init"]; e.Mode != modeRegular|0o755 || !bytes.Equal(e.Body, agent) {
		t.Errorf("init: mode %#o, %d bytes", e.Mode, len(e.Body))
	}
	if e := m["dev/console"]; e.Mode != modeChar|0o600 || e.RMajor != 5 || e.RMinor != 1 {
		t.Errorf("dev/console: %+v", e)
	}
	if e := m["etc/flint/cmd"]; string(e.Body) != "uname -r" || e.Mode != modeRegular|0o644 {
		t.Errorf("etc/flint/cmd: %q mode %#o", e.Body, e.Mode)
	}
	if e := m["flint/host.conf"]; string(e.Body) != "from the host" || e.Mode != modeRegular|0o600 {
		t.Errorf("flint/host.conf: %q mode %#o", e.Body, e.Mode)
	}
	var wantOrder strings.Builder
	for _, mod := range mods {
		p := ModuleDir + "/" + mod.Name + ".ko"
		wantOrder.WriteString(p + "\n")
		data, err := ReadModule(mod.Path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m[p[1:]].Body, data) {
			t.Errorf("%s: %d bytes in the archive, %d in %s", p, len(m[p[1:]].Body), len(data), mod.Path)
		}
	}
	if got := string(m[ModuleOrderPath[1:]].Body); got != wantOrder.String() || len(mods) != len(wantCloud) {
		t.Errorf("%s:\n%s\nwant\n%s", ModuleOrderPath, got, wantOrder.String())
	}
}

// TestBuildCompressed: compressed modules land decompressed under .ko names.
func TestBuildCompressed(t *testing.T) {
	dir, plain := compressedTree(t)
	mods, err := Resolve(dir, []string{"virtio_net"})
	if err != nil {
		t.Fatal(err)
	}
	agentFile := filepath.Join(t.TempDir(), "agent")
	os.WriteFile(agentFile, []byte("\x7fELF agent"), 0o755)
	mem := make([]byte, 4<<20)
	bw := NewBufferWriter(mem)
	if _, err := Build(bw, Options{InitFile: agentFile, Modules: mods}); err != nil {
		t.Fatal(err)
	}
	es, end, err := readNewc(bw.Bytes())
	if err != nil || end != bw.Len() {
		t.Fatalf("archive: %v (trailer ends at %d of %d)", err, end, bw.Len())
	}
	m := entryMap(t, es)
	if string(m["init"].Body) != "\x7fELF agent" {
		t.Errorf("init from a file: %q", m["init"].Body)
	}
	for name, data := range plain {
		if !bytes.Equal(m["flint/modules/"+name+".ko"].Body, data) {
			t.Errorf("%s differs from the uncompressed original", name)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	tmp := t.TempDir()
	garbage := filepath.Join(tmp, "bad.ko.xz")
	os.WriteFile(garbage, []byte("not xz"), 0o644)
	cases := map[string]Options{
		"no agent":             {},
		"two agents":           {Init: []byte("a"), InitFile: "/bin/sh"},
		"missing agent file":   {InitFile: filepath.Join(tmp, "missing")},
		"agent is a directory": {InitFile: tmp},
		"module twice":         {Init: []byte("a"), Modules: []Module{{"m", garbage}, {"m", garbage}}},
		"module name":          {Init: []byte("a"), Modules: []Module{{"../m", garbage}}},
		"missing module":       {Init: []byte("a"), Modules: []Module{{"m", filepath.Join(tmp, "m.ko")}}},
		"corrupt module":       {Init: []byte("a"), Modules: []Module{{"bad", garbage}}},
		"extra over /init":     {Init: []byte("a"), Files: []File{{Path: "/init", Data: []byte("x")}}},
		"extra bad path":       {Init: []byte("a"), Files: []File{{Path: "../x", Data: []byte("x")}}},
		"extra data and host":  {Init: []byte("a"), Files: []File{{Path: "x", Data: []byte("x"), HostPath: garbage}}},
		"extra under a file":   {Init: []byte("a"), Files: []File{{Path: "init/x", Data: []byte("x")}}},
	}
	for name, opt := range cases {
		if _, err := Build(&bytes.Buffer{}, opt); err == nil {
			t.Errorf("%s: Build succeeded", name)
		}
	}
	full := NewBufferWriter(make([]byte, 1000))
	if _, err := Build(full, Options{Init: make([]byte, 2000)}); !errors.Is(err, ErrBufferFull) {
		t.Errorf("archive larger than the buffer: %v", err)
	}
	// The same through BufferWriter.ReadFrom, from a file.
	big := filepath.Join(tmp, "big-agent")
	os.WriteFile(big, make([]byte, 2000), 0o755)
	if _, err := Build(NewBufferWriter(make([]byte, 1000)), Options{InitFile: big}); !errors.Is(err, ErrBufferFull) {
		t.Errorf("agent file larger than the buffer: %v", err)
	}
	if _, err := Build(NewBufferWriter(make([]byte, 2000)), Options{InitFile: big}); !errors.Is(err, ErrBufferFull) {
		t.Errorf("agent file filling the buffer exactly, then the rest: %v", err)
	}
}

// benchBuild builds the command-mode initramfs for the modules of tree into
// a buffer the size guest memory would reserve, as vmm would.
func benchBuild(b *testing.B, mods []Module) {
	agent := make([]byte, 3<<20) // a static Go agent is a few MiB
	var probe bytes.Buffer
	size, err := Build(&probe, Options{Init: agent, Modules: mods})
	if err != nil {
		b.Fatal(err)
	}
	mem := make([]byte, size)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(NewBufferWriter(mem), Options{Init: agent, Modules: mods}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(mods)), "modules")
}

// BenchmarkBuildCloud: Debian 12 cloud's command-mode modules, plain .ko
// files as the distribution ships them (issue 12's target: <= 20 ms).
func BenchmarkBuildCloud(b *testing.B) {
	dir, _ := cachedTree(b, "cloud")
	mods, err := Resolve(dir, DefaultModules)
	if err != nil {
		b.Fatal(err)
	}
	benchBuild(b, mods)
}

// BenchmarkBuildCloudXZ and BenchmarkBuildCloudZstd: the same modules as
// .ko.xz (compressed as kmod does: CRC32, 1 MiB dictionary) and .ko.zst, as
// newer distributions ship them, decompressed at every build.
func BenchmarkBuildCloudXZ(b *testing.B)   { benchCompressed(b, "xz") }
func BenchmarkBuildCloudZstd(b *testing.B) { benchCompressed(b, "zst") }

func benchCompressed(b *testing.B, kind string) {
	dir, _ := cachedTree(b, "cloud")
	mods, err := Resolve(dir, DefaultModules)
	if err != nil {
		b.Fatal(err)
	}
	tmp := b.TempDir()
	for i, m := range mods {
		data, err := os.ReadFile(m.Path)
		if err != nil {
			b.Fatal(err)
		}
		mods[i].Path = filepath.Join(tmp, m.Name+".ko."+kind)
		if err := os.WriteFile(mods[i].Path, compress(b, kind, data), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	benchBuild(b, mods)
}
