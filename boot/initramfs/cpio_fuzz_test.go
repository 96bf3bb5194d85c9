package initramfs

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzWriter feeds arbitrary names, targets, modes, sizes and bodies to every
// kind of entry. The writer must never panic; an entry it rejects must leave
// nothing behind (the archive still parses); an entry it accepts must read
// back exactly, on a 4-byte aligned header.
func FuzzWriter(f *testing.F) {
	f.Add(uint8(0), "init", "", uint32(0o755), int64(5), []byte("hello"), uint32(0), uint32(0))
	f.Add(uint8(1), "flint/modules/virtio.ko", "", uint32(0o644), int64(3), []byte("abc"), uint32(0), uint32(0))
	f.Add(uint8(2), "/bin", "usr/bin", uint32(0o777), int64(0), []byte(nil), uint32(0), uint32(0))
	f.Add(uint8(3), "dev/console", "", uint32(0o600), int64(0), []byte(nil), uint32(5), uint32(1))
	f.Add(uint8(4), "a/b/c", "", uint32(0o755), int64(0), []byte(nil), uint32(0), uint32(0))
	f.Add(uint8(5), "TRAILER!!!", "", uint32(0o644), int64(0), []byte(nil), uint32(0), uint32(0))
	f.Add(uint8(1), "../etc/passwd", "", uint32(0o644), int64(9), []byte("short"), uint32(0), uint32(0))
	f.Fuzz(func(t *testing.T, kind uint8, name, target string, perm uint32, size int64, data []byte, major, minor uint32) {
		var buf bytes.Buffer
		w := NewWriter(&buf)
		if err := w.Dir("first", 0o755); err != nil {
			t.Fatal(err)
		}
		before := buf.Len()
		var err error
		wantMode, wantBody := uint32(0), data
		switch kind % 6 {
		case 0:
			err, wantMode = w.File(name, perm, data), modeRegular|perm
		case 1:
			err, wantMode = w.FileFrom(name, perm, size, bytes.NewReader(data)), modeRegular|perm
			if err == nil {
				wantBody = data[:size]
			}
		case 2:
			err, wantMode, wantBody = w.Symlink(name, target), modeSymlink|0o777, []byte(target)
		case 3:
			err, wantMode, wantBody = w.Device(name, perm, DeviceKind(kind/6%3), major, minor), modeChar|perm, nil
			if kind/6%3 == 1 {
				wantMode = modeBlock | perm
			}
		case 4:
			err, wantMode, wantBody = w.MkdirAll(name, perm), modeDir|perm, nil
		case 5:
			err, wantMode, wantBody = w.Dir(name, perm), modeDir|perm, nil
		}
		broken := errors.Is(err, ErrBadEntry) && strings.Contains(err.Error(), "bytes announced")
		if err != nil && !broken && buf.Len() != before {
			t.Fatalf("rejected entry (%v) wrote %d bytes", err, buf.Len()-before)
		}
		cerr := w.Close()
		if broken {
			if cerr == nil {
				t.Fatal("Close succeeded on a broken archive")
			}
			return
		}
		if cerr != nil {
			t.Fatalf("Close: %v", cerr)
		}
		es, end, perr := readNewc(buf.Bytes())
		if perr != nil || end != buf.Len() {
			t.Fatalf("archive does not parse (%v) or has %d bytes after the trailer", perr, buf.Len()-end)
		}
		if err != nil {
			if len(es) != 1 {
				t.Fatalf("rejected entry left %d entries", len(es))
			}
			return
		}
		last := es[len(es)-1]
		if kind%6 == 4 && strings.TrimPrefix(name, "/") == "first" {
			// MkdirAll of a directory already there writes nothing.
			if len(es) != 1 {
				t.Fatalf("MkdirAll of an existing directory wrote %d entries", len(es)-1)
			}
			return
		}
		if last.Name != strings.TrimPrefix(name, "/") || last.Mode != wantMode || !bytes.Equal(last.Body, wantBody) {
			t.Fatalf("read back %q mode %#o body %d bytes, want %q mode %#o body %d bytes",
				last.Name, last.Mode, len(last.Body), name, wantMode, len(wantBody))
		}
	})
}
