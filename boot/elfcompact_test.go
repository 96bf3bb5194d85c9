package boot

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// debugFile is an ELF file as a kernel build leaves it: head (the image's
// bytes) then debug sections up to size bytes (0xdb, never stored). It
// counts the bytes read and the highest offset reached.
type debugFile struct {
	head       []byte
	size       int64
	read, high int64
}

func (d *debugFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= d.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), d.size-off))
	c := 0
	if off < int64(len(d.head)) {
		c = copy(p[:n], d.head[off:])
	}
	for i := c; i < n; i++ {
		p[i] = 0xdb
	}
	d.read += int64(n)
	d.high = max(d.high, off+int64(n))
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// withDebug returns image with section headers that lie in debug bytes
// at the end of a size-byte file, as a vmlinux built with debug info has.
func withDebug(image []byte, size int64) *debugFile {
	b := bytes.Clone(image)
	le.PutUint64(b[40:], uint64(size)-40*64) // e_shoff
	le.PutUint16(b[58:], 64)                 // e_shentsize
	le.PutUint16(b[60:], 40)                 // e_shnum
	le.PutUint16(b[62:], 39)                 // e_shstrndx
	return &debugFile{head: b, size: size}
}

const testBanner = "Linux version 6.1.0-test (dev@host) (gcc 12) #1 SMP"

// releaseELF is the default fake vmlinux with a kernel banner in its code.
func releaseELF() fakeELF {
	f := defaultELF()
	code := bytes.Clone(f.at[0x1000]) // f.at's writes overlap in no order
	copy(code[0x100:], testBanner)
	f.at[0x1000] = code
	return f
}

// sameKernel checks that ParseELF finds in compact what it finds in orig:
// the same segments (but for their file offsets) with the same bytes, the
// same bounds and entry points.
func sameKernel(t testing.TB, orig, compact []byte) {
	t.Helper()
	ko, err := ParseELF(orig)
	if err != nil {
		t.Fatalf("original: %v", err)
	}
	kc, err := ParseELF(compact)
	if err != nil {
		t.Fatalf("compact image: %v", err)
	}
	if len(ko.Segments) != len(kc.Segments) || ko.Start != kc.Start || ko.End != kc.End ||
		ko.Entry64 != kc.Entry64 || ko.HasPVH != kc.HasPVH || ko.PVHEntry != kc.PVHEntry {
		t.Fatalf("compact image's kernel %+v, original's %+v", kc, ko)
	}
	for i, so := range ko.Segments {
		sc := kc.Segments[i]
		if sc.Index != so.Index || sc.Paddr != so.Paddr || sc.Filesz != so.Filesz || sc.Memsz != so.Memsz {
			t.Fatalf("segment %d: compact %+v, original %+v", i, sc, so)
		}
		if !bytes.Equal(compact[sc.Offset:sc.Offset+sc.Filesz], orig[so.Offset:so.Offset+so.Filesz]) {
			t.Fatalf("segment %d: the compact image's bytes differ from the file's", i)
		}
	}
}

func TestCompactELFDebugPadding(t *testing.T) {
	orig := releaseELF().bytes()
	d := withDebug(orig, 1<<30)
	img, err := CompactELF(d, d.size, 512<<20)
	if err != nil {
		t.Fatal(err)
	}
	// Header, 4 program headers, the notes, then [0x1000, 0x3800): the
	// two PT_LOADs, adjacent in the file, as one run.
	notes := len(fakeNotes(true))
	if want := elfHeaderSize + 4*elfPhdrSize + notes + 0x2800; len(img) != want {
		t.Errorf("compact image of %d bytes, want %d", len(img), want)
	}
	if d.read != int64(len(img)) || d.high > int64(len(orig)) {
		t.Errorf("read %d bytes up to offset %#x; want each of the image's %d bytes once, none past %#x", d.read, d.high, len(img), len(orig))
	}
	if le.Uint64(img[40:]) != 0 || le.Uint16(img[60:]) != 0 || le.Uint16(img[62:]) != 0 {
		t.Error("the compact image still names section headers")
	}
	sameKernel(t, d.head, img)
	if r, err := ImageRelease(img); err != nil || r != "6.1.0-test" {
		t.Errorf("release of the compact image %q, %v", r, err)
	}
	// The loader's own functions boot the compact image exactly as the
	// original: the same entry state and the same guest memory.
	sameBoot(t, d.head, img)
}

// sameBoot loads orig and compact with Load through both entry paths and
// checks that they give the same entry state and the same guest memory.
func sameBoot(t *testing.T, orig, compact []byte) {
	t.Helper()
	load := func(kernel []byte, entry EntryPath) ([]byte, *Entry) {
		m := newMem(t, 64<<20)
		e, err := Load(m, Config{Kernel: kernel, Initrd: bytes.Repeat([]byte{0x42}, 5000), Cmdline: "console=ttyS0",
			CPUs: 2, ACPI: acpiConfig(), Entry: entry})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := m.Slice(0, 64<<20)
		return b, e
	}
	for _, entry := range []EntryPath{EntryPVH, EntryLinux64} {
		mo, eo := load(orig, entry)
		mc, ec := load(compact, entry)
		if !reflect.DeepEqual(eo, ec) {
			t.Errorf("%s: entry %+v, original's %+v", entry, ec, eo)
		}
		if !bytes.Equal(mo, mc) {
			t.Errorf("%s: guest memory differs from the original's", entry)
		}
	}
}

// TestCompactELFLayouts compacts variants of the fake vmlinux and checks
// each against the original.
func TestCompactELFLayouts(t *testing.T) {
	cases := map[string]func(f *fakeELF){
		"virtual entry": func(f *fakeELF) { f.entry = 0xffffffff81000000 + fakeCode + 0x10 },
		// The notes inside the first PT_LOAD's bytes, as in a vmlinux.
		"note inside a load": func(f *fakeELF) {
			code := bytes.Clone(f.at[0x1000])
			copy(code[0x800:], f.at[fakeNoteOff])
			f.at[0x1000] = code
			delete(f.at, fakeNoteOff)
			f.phdrs[2].off = 0x1800
		},
		"8-aligned notes": func(f *fakeELF) {
			n := append(xenNote(4, fakePVH), 0, 0, 0, 0)
			f.at[fakeNoteOff] = n
			f.phdrs[2].filesz, f.phdrs[2].align = uint64(len(n)), 8
		},
		"bss-only load": func(f *fakeELF) {
			f.phdrs[3] = fakePhdr{typ: elfPTLoad, off: 0x3800, paddr: 0x400000, memsz: 0x5000}
		},
		"loads out of file order": func(f *fakeELF) {
			f.phdrs[0], f.phdrs[1] = f.phdrs[1], f.phdrs[0]
		},
		"no PVH note": func(f *fakeELF) {
			f.at[fakeNoteOff] = fakeNotes(false)
			f.phdrs[2].filesz = uint64(len(fakeNotes(false)))
		},
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			f := releaseELF()
			change(&f)
			orig := f.bytes()
			img, err := CompactELF(bytes.NewReader(orig), int64(len(orig)), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			sameKernel(t, orig, img)
			if len(img) > elfHeaderSize+len(f.phdrs)*elfPhdrSize+len(orig)-0x400 {
				t.Errorf("compact image of %d bytes from a %d-byte file", len(img), len(orig))
			}
		})
	}
}

func TestCompactELFErrors(t *testing.T) {
	type tc struct {
		name  string
		file  func() *debugFile
		limit int64
		kind  error // nil: not a kernel error (I/O, limit)
		msg   string
	}
	fake := func(change func(f *fakeELF)) func() *debugFile {
		return func() *debugFile {
			f := defaultELF()
			change(&f)
			b := f.bytes()
			return &debugFile{head: b, size: int64(len(b))}
		}
	}
	raw := func(change func(b []byte)) func() *debugFile {
		return func() *debugFile {
			b := defaultELF().bytes()
			change(b)
			return &debugFile{head: b, size: int64(len(b))}
		}
	}
	cases := []tc{
		{"truncated header", func() *debugFile { return &debugFile{head: elfMagic, size: 4} }, 0, ErrKernelTruncated, "ELF64 header needs 64"},
		{"not ELF", raw(func(b []byte) { b[0] = 0 }), 0, ErrBadELF, "no \\x7fELF magic"},
		{"32-bit", fake(func(f *fakeELF) { f.class = 1 }), 0, ErrUnsupportedKernel, "ELF class 1:"},
		{"big-endian", fake(func(f *fakeELF) { f.data = 2 }), 0, ErrUnsupportedKernel, "ELF data encoding 2:"},
		{"no program headers", raw(func(b []byte) { le.PutUint16(b[56:], 0) }), 0, ErrBadELF, "no program headers"},
		{"PN_XNUM", raw(func(b []byte) { le.PutUint16(b[56:], elfPhnumEscape) }), 0, ErrBadELF, "65535 program headers"},
		{"65 program headers", raw(func(b []byte) { le.PutUint16(b[56:], 65) }), 0, ErrBadELF, "at most 64"},
		{"program header size", fake(func(f *fakeELF) { f.phentsize = 64 }), 0, ErrBadELF, "program header size 64"},
		{"program headers past the end", raw(func(b []byte) { le.PutUint64(b[32:], uint64(len(b))-100) }), 0, ErrKernelTruncated, "program headers"},
		{"program headers at 2^64-1", raw(func(b []byte) { le.PutUint64(b[32:], 1<<64-1) }), 0, ErrKernelTruncated, "outside the"},
		{"segment past the end", fake(func(f *fakeELF) { f.phdrs[1].filesz, f.phdrs[1].memsz = 0x10000, 0x10000 }), 0, ErrKernelTruncated, "program header 1: file range"},
		{"offset + filesz wraps", fake(func(f *fakeELF) { f.phdrs[0].off = 1<<64 - 0x100 }), 0, ErrKernelTruncated, "program header 0: file range"},
		{"empty load past the end", fake(func(f *fakeELF) { f.phdrs[0].off, f.phdrs[0].filesz = 1<<40, 0 }), 0, ErrKernelTruncated, "program header 0"},
		{"note past the end", fake(func(f *fakeELF) { f.phdrs[2].off = 0x37f0 }), 0, ErrKernelTruncated, "program header 2"},
		{"overlapping loads", fake(func(f *fakeELF) { f.phdrs[1].paddr = fakeCode + 0x1000 }), 0, ErrBadELF, "overlaps PT_LOAD 0"},
		{"filesz over memsz", fake(func(f *fakeELF) { f.phdrs[1].memsz = 0x10 }), 0, ErrBadELF, "larger than memsz"},
		{"entry outside", fake(func(f *fakeELF) { f.entry = 0x5 }), 0, ErrBadELF, "entry point 0x5"},
		{"bad note", fake(func(f *fakeELF) { f.at[fakeNoteOff] = xenNote(3, fakePVH); f.phdrs[2].filesz = 16 + 3 }), 0, ErrBadELF, "3-byte descriptor"},
		{"x86 only", fake(func(f *fakeELF) { f.machine = 183 }), 0, ErrUnsupportedKernel, "machine 183"},
		{"over the limit", fake(func(*fakeELF) {}), 0x1000, nil, "more than the 0 MiB limit"},
		{"file cut short", func() *debugFile {
			b := defaultELF().bytes()
			return &debugFile{head: b[:0x2000], size: 0x2000}
		}, 0, ErrKernelTruncated, "outside the 8192-byte file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := c.file()
			limit := c.limit
			if limit == 0 {
				limit = 512 << 20
			}
			img, err := CompactELF(d, d.size, limit)
			checkCompactErr(t, img, err, c.kind, c.msg)
		})
	}
}

func checkCompactErr(t *testing.T, img []byte, err, kind error, msg string) {
	t.Helper()
	switch {
	case err == nil:
		t.Fatalf("accepted (%d bytes), want an error with %q", len(img), msg)
	case img != nil:
		t.Errorf("an image with the error %v", err)
	case !strings.Contains(err.Error(), msg) || strings.Contains(err.Error(), "\n"):
		t.Errorf("error %q, want one line with %q", err, msg)
	case kind != nil && (!errors.Is(err, kind) || !errors.Is(err, ErrInvalidKernel)):
		t.Errorf("error %q is not %v and %v", err, kind, ErrInvalidKernel)
	case kind == nil && errors.Is(err, ErrInvalidKernel):
		t.Errorf("error %q blames the kernel image", err)
	}
}

// TestCompactELFNoHugeAllocation: a segment claiming a TiB of a 2-TiB
// (sparse) file is refused by the limit before anything is read or
// allocated; one whose file shrinks under the reader is an I/O error.
func TestCompactELFNoHugeAllocation(t *testing.T) {
	f := defaultELF()
	f.phdrs[1].filesz, f.phdrs[1].memsz = 1<<40, 1<<40
	d := withDebug(f.bytes(), 2<<40)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	img, err := CompactELF(d, d.size, 512<<20)
	runtime.ReadMemStats(&after)
	checkCompactErr(t, img, err, nil, "1048576 MiB, more than the 512 MiB limit")
	if d.read > elfHeaderSize+4*elfPhdrSize {
		t.Errorf("read %d bytes before refusing", d.read)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("allocated %d bytes before refusing", n)
	}

	// The file is shorter than its size said when the segments are read.
	b := defaultELF().bytes()
	short := &debugFile{head: b, size: int64(len(b))}
	img, err = CompactELF(shrinking{short, 0x2000}, short.size, 512<<20)
	checkCompactErr(t, img, err, nil, "the file shrank while being read?")
}

// shrinking reads as d up to n bytes, then as a file that ends there.
type shrinking struct {
	d *debugFile
	n int64
}

func (s shrinking) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.n {
		return 0, io.EOF
	}
	k, err := s.d.ReadAt(p[:min(int64(len(p)), s.n-off)], off)
	if err == nil && k < len(p) {
		err = io.EOF
	}
	return k, err
}

func TestReadKernel(t *testing.T) {
	// Not ELF: read whole (a bzImage; its header is checked later).
	bz := append([]byte("MZ"), bytes.Repeat([]byte{7}, 5000)...)
	if b, err := ReadKernel(bytes.NewReader(bz), int64(len(bz)), 1<<20); err != nil || !bytes.Equal(b, bz) {
		t.Errorf("bzImage read as %d bytes, %v", len(b), err)
	}
	if b, err := ReadKernel(bytes.NewReader(bz), int64(len(bz)), 4096); err == nil || !strings.Contains(err.Error(), "too large (limit 0 MiB)") {
		t.Errorf("bzImage over the limit: %d bytes, %v", len(b), err)
	}
	for _, tiny := range [][]byte{nil, {0x7f}, []byte("\x7fEL")} {
		if b, err := ReadKernel(bytes.NewReader(tiny), int64(len(tiny)), 1<<20); err != nil || !bytes.Equal(b, tiny) {
			t.Errorf("%q read as %q, %v", tiny, b, err)
		}
	}
	// ELF: compacted, whatever the file's size.
	d := withDebug(releaseELF().bytes(), 3<<30)
	b, err := ReadKernel(d, d.size, 512<<20)
	if err != nil || len(b) > 0x3000 {
		t.Fatalf("ELF read as %d bytes, %v", len(b), err)
	}
	sameKernel(t, d.head, b)
	if _, err := ReadKernel(d, -1, 512<<20); err == nil {
		t.Error("a negative size was accepted")
	}
}

// BenchmarkCompactELF compacts the fake vmlinux inside a 1 GiB file.
func BenchmarkCompactELF(b *testing.B) {
	d := withDebug(releaseELF().bytes(), 1<<30)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := CompactELF(d, d.size, 512<<20); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzCompactELF(f *testing.F) {
	f.Add(releaseELF().bytes())
	noPVH := defaultELF()
	noPVH.at[fakeNoteOff] = fakeNotes(false)
	noPVH.phdrs[2].filesz = uint64(len(fakeNotes(false)))
	f.Add(noPVH.bytes())
	inLoad := defaultELF()
	inLoad.phdrs[2].off = 0x1ff0
	f.Add(inLoad.bytes())
	f.Add(defaultELF().bytes()[:elfHeaderSize+2*elfPhdrSize])
	f.Add(elfMagic)
	f.Fuzz(func(t *testing.T, file []byte) {
		size := int64(len(file))
		img, err := CompactELF(bytes.NewReader(file), size, 1<<20)
		_, perr := ParseELF(file)
		switch {
		case err != nil:
			if img != nil || strings.Contains(err.Error(), "\n") {
				t.Fatalf("bad error %q (image %d bytes)", err, len(img))
			}
			if !errors.Is(err, ErrInvalidKernel) {
				// Only the limit: the file's loadable bytes are over 1 MiB.
				if size <= 1<<20-elfHeaderSize-maxELFPhdrs*elfPhdrSize || !strings.Contains(err.Error(), "limit") {
					t.Fatalf("error %q is not a kernel error", err)
				}
				return
			}
			if perr == nil {
				t.Fatalf("CompactELF refused (%v) what ParseELF accepts", err)
			}
		case perr != nil:
			t.Fatalf("CompactELF accepted what ParseELF refuses (%v)", perr)
		default:
			if int64(len(img)) > size+elfHeaderSize+maxELFPhdrs*elfPhdrSize {
				t.Fatalf("compact image of %d bytes from a %d-byte file", len(img), size)
			}
			sameKernel(t, file, img)
			ro, oerr := ELFKernelRelease(file)
			rc, cerr := ELFKernelRelease(img)
			if ro != rc || (oerr == nil) != (cerr == nil) {
				t.Fatalf("release %q, %v; the original's %q, %v", rc, cerr, ro, oerr)
			}
		}
	})
}
