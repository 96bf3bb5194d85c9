package initramfs

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// writeSample writes one entry of every kind; its content is what
// TestRoundTrip and the cpio(1) checks expect back.
func writeSample(t *testing.T, w *Writer) {
	t.Helper()
	steps := []error{
		w.Dir("/dev", 0o755),
		w.Device("dev/console", 0o600, CharDevice, 5, 1),
		w.Device("dev/vda", 0o660, BlockDevice, 254, 0),
		w.File("/init", 0o755, []byte("#!agent\n")),
		w.MkdirAll("flint/modules", 0o755),
		w.FileFrom("flint/modules/a.ko", 0o644, 5, strings.NewReader("hello")),
		w.File("flint/empty", 0o644, nil),
		w.Symlink("bin", "usr/bin"),
		w.MkdirAll("/usr/bin", 0o755),
		w.Dir("tmp", 0o1777),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	writeSample(t, w)
	if w.Offset() != int64(buf.Len()) || buf.Len()%4 != 0 {
		t.Fatalf("Offset %d, archive %d bytes (want equal, a multiple of 4)", w.Offset(), buf.Len())
	}
	es, end, err := readNewc(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if end != buf.Len() {
		t.Fatalf("trailer ends at %d of %d bytes", end, buf.Len())
	}
	want := []struct {
		name         string
		mode         uint32
		body         string
		major, minor uint32
	}{
		{"dev", 0o040755, "", 0, 0},
		{"dev/console", 0o020600, "", 5, 1},
		{"dev/vda", 0o060660, "", 254, 0},
		{"init", 0o100755, "#!agent\n", 0, 0},
		{"flint", 0o040755, "", 0, 0},
		{"flint/modules", 0o040755, "", 0, 0},
		{"flint/modules/a.ko", 0o100644, "hello", 0, 0},
		{"flint/empty", 0o100644, "", 0, 0},
		{"bin", 0o120777, "usr/bin", 0, 0},
		{"usr", 0o040755, "", 0, 0},
		{"usr/bin", 0o040755, "", 0, 0},
		{"tmp", 0o041777, "", 0, 0},
	}
	if len(es) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(es), len(want), es)
	}
	inos := map[uint32]bool{}
	for i, e := range es {
		wt := want[i]
		if e.Name != wt.name || e.Mode != wt.mode || string(e.Body) != wt.body || e.RMajor != wt.major || e.RMinor != wt.minor {
			t.Errorf("entry %d = %q mode %#o body %q dev %d:%d, want %+v", i, e.Name, e.Mode, e.Body, e.RMajor, e.RMinor, wt)
		}
		if inos[e.Ino] || e.Ino == 0 {
			t.Errorf("entry %q: inode %d is zero or repeated", e.Name, e.Ino)
		}
		inos[e.Ino] = true
	}
}

func TestBadNames(t *testing.T) {
	long := strings.Repeat("a", MaxNameLen+1)
	for _, name := range []string{"", "/", "//", "a//b", "a/", "./a", "a/.", "..", "../a", "a/../b", "a\x00b", long, "TRAILER!!!", "/TRAILER!!!"} {
		var buf bytes.Buffer
		w := NewWriter(&buf)
		for what, err := range map[string]error{
			"Dir":      w.Dir(name, 0o755),
			"File":     w.File(name, 0o644, []byte("x")),
			"FileFrom": w.FileFrom(name, 0o644, 1, strings.NewReader("x")),
			"Symlink":  w.Symlink(name, "x"),
			"Device":   w.Device(name, 0o600, CharDevice, 1, 3),
			"MkdirAll": w.MkdirAll(name, 0o755),
		} {
			if !errors.Is(err, ErrBadName) {
				t.Errorf("%s(%.20q) = %v, want ErrBadName", what, name, err)
			}
		}
		if buf.Len() != 0 {
			t.Errorf("name %.20q: %d bytes written for rejected entries", name, buf.Len())
		}
		// A rejected entry does not break the writer.
		if err := w.File("ok", 0o644, nil); err != nil {
			t.Errorf("after rejecting %.20q: %v", name, err)
		}
	}
	// The longest name accepted.
	w := NewWriter(io.Discard)
	if err := w.File(strings.Repeat("b", MaxNameLen), 0o644, nil); err != nil {
		t.Errorf("name of MaxNameLen bytes: %v", err)
	}
}

func TestBadEntries(t *testing.T) {
	w := NewWriter(io.Discard)
	cases := map[string]error{
		"dup file":        errors.Join(w.File("a", 0o644, nil), w.File("/a", 0o644, nil)),
		"dup dir":         errors.Join(w.Dir("d", 0o755), w.Dir("d", 0o755)),
		"file as parent":  w.MkdirAll("a/b", 0o755),
		"empty target":    w.Symlink("l1", ""),
		"NUL target":      w.Symlink("l2", "a\x00"),
		"long target":     w.Symlink("l3", strings.Repeat("t", MaxNameLen+1)),
		"mode bits":       w.File("m", 0o100644, nil),
		"dir mode bits":   w.Dir("m2", 0o40755),
		"negative size":   w.FileFrom("s1", 0o644, -1, strings.NewReader("")),
		"huge size":       w.FileFrom("s2", 0o644, MaxFileSize+1, strings.NewReader("")),
		"no reader":       w.FileFrom("s3", 0o644, 1, nil),
		"device kind":     w.Device("d1", 0o600, DeviceKind(7), 1, 1),
		"device mode":     w.Device("d2", 0o10600, CharDevice, 1, 1),
		"mkdirall mode":   w.MkdirAll("x/y", 0o10000),
		"symlink in dirs": errors.Join(w.Symlink("ln", "d"), w.MkdirAll("ln/x", 0o755)),
	}
	for name, err := range cases {
		if !errors.Is(err, ErrBadName) && !errors.Is(err, ErrBadEntry) {
			t.Errorf("%s: got %v, want ErrBadName or ErrBadEntry", name, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("rejected entries must not break the writer: %v", err)
	}
	if err := w.File("late", 0o644, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("entry after Close: %v, want ErrClosed", err)
	}
	if err := w.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
}

func TestShortReaderBreaksWriter(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	err := w.FileFrom("f", 0o644, 10, strings.NewReader("short"))
	if !errors.Is(err, ErrBadEntry) {
		t.Fatalf("short reader: %v, want ErrBadEntry", err)
	}
	if err2 := w.File("g", 0o644, nil); err2 == nil || err2.Error() != err.Error() {
		t.Errorf("after a short reader: %v, want the same error again", err2)
	}
	if err2 := w.Close(); err2 == nil {
		t.Error("Close after a short reader succeeded")
	}
	// A reader that fails outright.
	w = NewWriter(io.Discard)
	if err := w.FileFrom("f", 0o644, 3, iotest.ErrReader(io.ErrUnexpectedEOF)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("failing reader: %v", err)
	}
}

func TestBufferWriter(t *testing.T) {
	var full bytes.Buffer
	writeSample(t, NewWriter(&full))

	mem := make([]byte, full.Len())
	bw := NewBufferWriter(mem)
	writeSample(t, NewWriter(bw))
	if !bytes.Equal(bw.Bytes(), full.Bytes()) || bw.Len() != full.Len() {
		t.Fatal("archive written in place differs from the streamed one")
	}

	small := NewBufferWriter(make([]byte, full.Len()-1))
	w := NewWriter(small)
	var err error
	for i := 0; err == nil && i < 1000; i++ {
		err = w.File("f"+strings.Repeat("x", i), 0o644, []byte("data"))
	}
	if err == nil {
		err = w.Close()
	}
	if !errors.Is(err, ErrBufferFull) {
		t.Fatalf("overfull buffer: %v, want ErrBufferFull", err)
	}
	if err := w.Close(); !errors.Is(err, ErrBufferFull) {
		t.Errorf("Close after a full buffer: %v, want the sticky ErrBufferFull", err)
	}
}

// gzipped returns a gzip stream of a one-file newc archive.
func gzipped(t *testing.T, name, body string) []byte {
	t.Helper()
	var arc, z bytes.Buffer
	w := NewWriter(&arc)
	if err := errors.Join(w.File(name, 0o644, []byte(body)), w.Close()); err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(&z)
	zw.Write(arc.Bytes())
	zw.Close()
	return z.Bytes()
}

// TestAppendAfterUserInitrd: an archive written after WriteUserInitrd is
// found by the kernel's rules whatever the user initrd's length.
func TestAppendAfterUserInitrd(t *testing.T) {
	for extra := range 4 {
		user := append(gzipped(t, "user/file", "from the user"), make([]byte, extra)...)
		var img bytes.Buffer
		n, err := WriteUserInitrd(&img, bytes.NewReader(user))
		if err != nil {
			t.Fatal(err)
		}
		if n%4 != 0 || n != int64(img.Len()) || n-int64(len(user)) > 3 {
			t.Fatalf("user initrd of %d bytes: %d written", len(user), n)
		}
		w := NewWriter(&img)
		if err := errors.Join(w.File("init", 0o755, []byte("agent")), w.Close()); err != nil {
			t.Fatal(err)
		}
		es, err := kernelSplit(img.Bytes())
		if err != nil {
			t.Fatalf("user initrd of %d bytes: %v", len(user), err)
		}
		if len(es) != 2 || es[0].Name != "user/file" || es[1].Name != "init" || string(es[1].Body) != "agent" {
			t.Fatalf("user initrd of %d bytes: entries %+v", len(user), es)
		}
	}
	// The check can fail: an archive straight after an unaligned stream is lost.
	user := gzipped(t, "user/file", "x")
	if len(user)%4 == 0 {
		user = append(user, 0xff)
	}
	img := append([]byte(nil), user...)
	var arc bytes.Buffer
	w := NewWriter(&arc)
	w.File("init", 0o755, nil)
	w.Close()
	if _, err := kernelSplit(append(img, arc.Bytes()...)); err == nil {
		t.Error("kernelSplit accepted an archive at an unaligned offset")
	}
}

// TestCpioTool reads the archive with GNU cpio, when it is installed: it
// must list every entry and extract the files byte for byte.
func TestCpioTool(t *testing.T) {
	bin, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("cpio(1) is not installed (Debian package cpio)")
	}
	var buf bytes.Buffer
	writeSample(t, NewWriter(&buf))
	cmd := exec.Command(bin, "-t", "--quiet")
	cmd.Stdin = bytes.NewReader(buf.Bytes())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v\n%s", err, out)
	}
	want := "dev\ndev/console\ndev/vda\ninit\nflint\nflint/modules\nflint/modules/a.ko\nflint/empty\nbin\nusr\nusr/bin\ntmp\n"
	if string(out) != want {
		t.Errorf("cpio -t listed\n%s\nwant\n%s", out, want)
	}

	// Extract an archive without device nodes and compare the files.
	var files bytes.Buffer
	w := NewWriter(&files)
	body := bytes.Repeat([]byte("0123456789abcdef"), 5000)
	if err := errors.Join(w.MkdirAll("a/b", 0o755), w.File("a/b/big", 0o640, body[:len(body)-3]),
		w.Symlink("a/l", "b/big"), w.Close()); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd = exec.Command(bin, "-i", "-d", "--quiet", "--no-absolute-filenames")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(files.Bytes())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "a/l"))
	if err != nil || !bytes.Equal(got, body[:len(body)-3]) {
		t.Errorf("extracted a/l -> a/b/big: %d bytes, %v", len(got), err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "a/b/big")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("a/b/big: %v %v, want mode 0640", fi, err)
	}
}

func BenchmarkWriterFile(b *testing.B) {
	data := make([]byte, 64<<10)
	w := NewWriter(io.Discard)
	names := make([]string, 1024)
	for i := range names {
		names[i] = "flint/modules/m" + strconv.Itoa(i) + ".ko"
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%len(names) == 0 {
			w = NewWriter(io.Discard)
		}
		if err := w.File(names[i%len(names)], 0o644, data); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBufferWriterReadFrom: FileFrom into a BufferWriter reads straight into
// the buffer; an exact fit succeeds, one byte more is ErrBufferFull.
func TestBufferWriterReadFrom(t *testing.T) {
	body := bytes.Repeat([]byte{7}, 1000)
	var ref bytes.Buffer
	rw := NewWriter(&ref)
	if err := errors.Join(rw.FileFrom("f", 0o644, 1000, bytes.NewReader(body)), rw.Close()); err != nil {
		t.Fatal(err)
	}
	exact := NewBufferWriter(make([]byte, ref.Len()))
	w := NewWriter(exact)
	if err := errors.Join(w.FileFrom("f", 0o644, 1000, bytes.NewReader(body)), w.Close()); err != nil {
		t.Fatalf("exact fit: %v", err)
	}
	if !bytes.Equal(exact.Bytes(), ref.Bytes()) {
		t.Error("archive through ReadFrom differs from the streamed one")
	}
	for _, room := range []int{headerLen + 4 + 999, headerLen + 4 + 1000} {
		w := NewWriter(NewBufferWriter(make([]byte, room)))
		err := w.FileFrom("f", 0o644, 1001, bytes.NewReader(append(body, 8)))
		if !errors.Is(err, ErrBufferFull) {
			t.Errorf("room %d for 1001 bytes: %v, want ErrBufferFull", room, err)
		}
	}
}
