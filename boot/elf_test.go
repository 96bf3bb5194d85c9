package boot

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/flintvm/flint/mem"
)

// fakePhdr is one program header of a hand-made ELF file.
type fakePhdr struct {
	typ                                     uint32
	off, vaddr, paddr, filesz, memsz, align uint64
}

// fakeELF describes a hand-made ELF vmlinux; bytes builds it.
type fakeELF struct {
	class, data      byte
	typ, machine     uint16
	entry            uint64
	phentsize, phnum uint16 // 0: the defaults (56, len(phdrs))
	phdrs            []fakePhdr
	size             int               // file size
	at               map[uint64][]byte // bytes placed at file offsets
}

// Addresses of the default fake vmlinux: code at 1 MiB + 64 KiB (file
// offset 0x1000, 0x2000 bytes, memsz 0x3000: a 0x1000-byte bss), a
// second segment at 2 MiB, a PT_NOTE with a GNU note and the PVH note.
const (
	fakeCode    = 0x110000
	fakeData    = 0x200000
	fakeEntry64 = fakeCode
	fakePVH     = fakeCode + 0x40
	fakeNoteOff = 0x400
)

func fakeNotes(pvh bool) []byte {
	var b []byte
	note := func(name string, typ uint32, desc []byte) {
		h := make([]byte, 12)
		le.PutUint32(h, uint32(len(name)+1))
		le.PutUint32(h[4:], uint32(len(desc)))
		le.PutUint32(h[8:], typ)
		b = append(b, h...)
		b = append(b, name...)
		b = append(b, make([]byte, alignUp(uint64(len(name)+1), 4)-uint64(len(name)))...)
		b = append(b, desc...)
		b = append(b, make([]byte, alignUp(uint64(len(desc)), 4)-uint64(len(desc)))...)
	}
	note("GNU", 3, []byte("0123456789abcdefghij"))
	if pvh {
		d := make([]byte, 8)
		le.PutUint64(d, fakePVH)
		note("Xen", XenNotePhys32Entry, d)
	}
	return b
}

func defaultELF() fakeELF {
	code := bytes.Repeat([]byte{0x90}, 0x2000)
	data := bytes.Repeat([]byte{0xd7}, 0x800)
	notes := fakeNotes(true)
	return fakeELF{
		class: elfClass64, data: elfDataLSB, typ: elfTypeExec, machine: elfMachineX64, entry: fakeEntry64,
		phdrs: []fakePhdr{
			{typ: elfPTLoad, off: 0x1000, vaddr: 0xffffffff81000000 + fakeCode, paddr: fakeCode, filesz: 0x2000, memsz: 0x3000, align: 0x1000},
			{typ: elfPTLoad, off: 0x3000, vaddr: 0xffffffff81000000 + fakeData, paddr: fakeData, filesz: 0x800, memsz: 0x800, align: 0x1000},
			{typ: elfPTNote, off: fakeNoteOff, filesz: uint64(len(notes)), memsz: uint64(len(notes)), align: 4},
			{typ: 0x6474e551}, // PT_GNU_STACK: ignored
		},
		size: 0x3800,
		at:   map[uint64][]byte{0x1000: code, 0x3000: data, fakeNoteOff: notes},
	}
}

func (f fakeELF) bytes() []byte {
	b := make([]byte, f.size)
	copy(b, elfMagic)
	b[4], b[5], b[6] = f.class, f.data, elfVersion
	le.PutUint16(b[16:], f.typ)
	le.PutUint16(b[18:], f.machine)
	le.PutUint32(b[20:], elfVersion)
	le.PutUint64(b[24:], f.entry)
	le.PutUint64(b[32:], elfHeaderSize)
	le.PutUint16(b[52:], elfHeaderSize)
	phentsize, phnum := f.phentsize, f.phnum
	if phentsize == 0 {
		phentsize = elfPhdrSize
	}
	if phnum == 0 {
		phnum = uint16(len(f.phdrs))
	}
	le.PutUint16(b[54:], phentsize)
	le.PutUint16(b[56:], phnum)
	for i, p := range f.phdrs {
		h := b[elfHeaderSize+i*elfPhdrSize:]
		le.PutUint32(h, p.typ)
		le.PutUint64(h[8:], p.off)
		le.PutUint64(h[16:], p.vaddr)
		le.PutUint64(h[24:], p.paddr)
		le.PutUint64(h[32:], p.filesz)
		le.PutUint64(h[40:], p.memsz)
		le.PutUint64(h[48:], p.align)
	}
	for off, v := range f.at {
		copy(b[off:], v)
	}
	return b
}

func TestParseELFValid(t *testing.T) {
	k, err := ParseELF(defaultELF().bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Segments) != 2 || k.Start != fakeCode || k.End != fakeData+0x800 {
		t.Fatalf("segments %+v, [%#x, %#x)", k.Segments, k.Start, k.End)
	}
	if s := k.Segments[0]; s != (ELFSegment{Index: 0, Offset: 0x1000, Paddr: fakeCode, Filesz: 0x2000, Memsz: 0x3000}) {
		t.Errorf("segment 0 %+v", s)
	}
	if !k.HasPVH || k.PVHEntry != fakePVH || k.Entry64 != fakeEntry64 {
		t.Errorf("entries: pvh %v %#x, 64-bit %#x", k.HasPVH, k.PVHEntry, k.Entry64)
	}

	// A virtual e_entry is translated through its segment's p_vaddr.
	f := defaultELF()
	f.entry = 0xffffffff81000000 + fakeCode + 0x10
	if k, err := ParseELF(f.bytes()); err != nil || k.Entry64 != fakeCode+0x10 {
		t.Errorf("virtual entry: %v, %+v", err, k)
	}
	// No PVH note; a 4-byte descriptor; 8-byte note alignment.
	f = defaultELF()
	f.at[fakeNoteOff] = fakeNotes(false)
	f.phdrs[2].filesz = uint64(len(fakeNotes(false)))
	if k, err := ParseELF(f.bytes()); err != nil || k.HasPVH {
		t.Errorf("no PVH note: %v, %+v", err, k)
	}
	f = defaultELF()
	f.at[fakeNoteOff] = xenNote(4, fakePVH)
	f.phdrs[2].filesz = 20
	if k, err := ParseELF(f.bytes()); err != nil || !k.HasPVH || k.PVHEntry != fakePVH {
		t.Errorf("4-byte PVH note: %v, %+v", err, k)
	}
	f.phdrs[2].align = 8 // the descriptor at 16 (12+4, 8-aligned), the note padded to 24
	f.at[fakeNoteOff] = append(xenNote(4, fakePVH), 0, 0, 0, 0)
	f.phdrs[2].filesz = 24
	if k, err := ParseELF(f.bytes()); err != nil || !k.HasPVH || k.PVHEntry != fakePVH {
		t.Errorf("8-aligned PVH note: %v, %+v", err, k)
	}
}

// xenNote is one PVH entry note with a descsz-byte descriptor.
func xenNote(descsz int, entry uint64) []byte {
	b := make([]byte, 16+descsz)
	le.PutUint32(b, 4)
	le.PutUint32(b[4:], uint32(descsz))
	le.PutUint32(b[8:], XenNotePhys32Entry)
	copy(b[12:], "Xen\x00")
	if descsz >= 8 {
		le.PutUint64(b[16:], entry)
	} else if descsz >= 4 {
		le.PutUint32(b[16:], uint32(entry))
	}
	return b
}

func TestParseELFErrors(t *testing.T) {
	cases := []struct {
		name string
		mod  func(f *fakeELF) []byte
		kind error
		msg  string
	}{
		{"truncated header", func(f *fakeELF) []byte { return f.bytes()[:40] }, ErrKernelTruncated, "ELF64 header needs 64"},
		{"class 32", func(f *fakeELF) []byte { f.class = 1; return f.bytes() }, ErrUnsupportedKernel, "ELF class 1"},
		{"big endian", func(f *fakeELF) []byte { f.data = 2; return f.bytes() }, ErrUnsupportedKernel, "little-endian"},
		{"version", func(f *fakeELF) []byte { b := f.bytes(); b[6] = 0; return b }, ErrBadELF, "ELF version 0/1"},
		{"ET_DYN", func(f *fakeELF) []byte { f.typ = 3; return f.bytes() }, ErrUnsupportedKernel, "ELF type 3"},
		{"aarch64", func(f *fakeELF) []byte { f.machine = 183; return f.bytes() }, ErrUnsupportedKernel, "ELF machine 183"},
		{"no phdrs", func(f *fakeELF) []byte { f.phdrs = nil; return f.bytes() }, ErrBadELF, "no program headers"},
		{"PN_XNUM", func(f *fakeELF) []byte { f.phnum = 0xffff; return f.bytes() }, ErrBadELF, "65535 program headers"},
		{"phentsize", func(f *fakeELF) []byte { f.phentsize = 64; return f.bytes() }, ErrBadELF, "program header size 64"},
		{"phdrs out of file", func(f *fakeELF) []byte { f.phnum = 60; return f.bytes()[:0x800] }, ErrKernelTruncated, "program headers [0x40, +60*56)"},
		{"phoff huge", func(f *fakeELF) []byte { b := f.bytes(); le.PutUint64(b[32:], 1<<63); return b }, ErrKernelTruncated, "outside the"},
		{"segment out of file", func(f *fakeELF) []byte { f.phdrs[1].filesz = 0x1000; return f.bytes() }, ErrKernelTruncated, "program header 1: file range [0x3000, +0x1000)"},
		{"segment offset wraps", func(f *fakeELF) []byte { f.phdrs[0].off = 1<<64 - 8; return f.bytes() }, ErrKernelTruncated, "program header 0"},
		{"filesz > memsz", func(f *fakeELF) []byte { f.phdrs[0].memsz = 0x1000; return f.bytes() }, ErrBadELF, "filesz 0x2000 is larger than memsz 0x1000"},
		{"paddr wraps", func(f *fakeELF) []byte { f.phdrs[0].paddr = 1<<64 - 0x1000; return f.bytes() }, ErrBadELF, "is beyond"},
		{"overlapping loads", func(f *fakeELF) []byte { f.phdrs[1].paddr = fakeCode + 0x2800; return f.bytes() }, ErrBadELF, "PT_LOAD 1 [0x112800, 0x113000) overlaps PT_LOAD 0"},
		{"no PT_LOAD", func(f *fakeELF) []byte { f.phdrs[0].typ, f.phdrs[1].typ = 6, 6; return f.bytes() }, ErrBadELF, "no loadable (PT_LOAD) segment"},
		{"note out of file", func(f *fakeELF) []byte { f.phdrs[2].off = 0x3700; f.phdrs[2].filesz = 0x200; return f.bytes() }, ErrKernelTruncated, "program header 2"},
		{"note namesz", func(f *fakeELF) []byte { b := f.bytes(); le.PutUint32(b[fakeNoteOff:], 0xfffffff0); return b }, ErrBadELF, "namesz 4294967280"},
		{"note descsz", func(f *fakeELF) []byte { b := f.bytes(); le.PutUint32(b[fakeNoteOff+4:], 0x7fffffff); return b }, ErrBadELF, "descsz 2147483647 run past"},
		{"note header cut", func(f *fakeELF) []byte { f.phdrs[2].filesz += 5; return f.bytes() }, ErrBadELF, "a note header needs 12"},
		{"PVH descsz", func(f *fakeELF) []byte {
			f.at[fakeNoteOff] = xenNote(6, fakePVH)
			f.phdrs[2].filesz = 24
			return f.bytes()
		}, ErrBadELF, "6-byte descriptor"},
		{"PVH entry outside", func(f *fakeELF) []byte {
			f.at[fakeNoteOff] = xenNote(8, 0x5000)
			f.phdrs[2].filesz = 24
			return f.bytes()
		}, ErrBadELF, "PVH entry point 0x5000"},
		{"PVH entry in bss", func(f *fakeELF) []byte {
			f.at[fakeNoteOff] = xenNote(8, fakeCode+0x2800)
			f.phdrs[2].filesz = 24
			return f.bytes()
		}, ErrBadELF, "PVH entry point 0x112800"},
		{"PVH entry above 4G", func(f *fakeELF) []byte {
			f.at[fakeNoteOff] = xenNote(8, 1<<32+fakeCode)
			f.phdrs[2].filesz = 24
			return f.bytes()
		}, ErrBadELF, "not a 32-bit address"},
		{"entry outside", func(f *fakeELF) []byte { f.entry = 0x5000; return f.bytes() }, ErrBadELF, "entry point 0x5000 is in no PT_LOAD"},
	}
	for _, c := range cases {
		f := defaultELF()
		k, err := ParseELF(c.mod(&f))
		if k != nil || !errors.Is(err, c.kind) || !errors.Is(err, ErrInvalidKernel) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: err = %v, want %v containing %q", c.name, err, c.kind, c.msg)
			continue
		}
		if strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "kernel: ") {
			t.Errorf("%s: %q is not one line starting with \"kernel: \"", c.name, err)
		}
	}
}

// TestELFPlacement: segments overlapping each of Flint's areas, or beyond
// RAM, are refused by Load and CheckKernel alike.
func TestELFPlacement(t *testing.T) {
	m := newMem(t, 32<<20)
	for _, c := range []struct {
		paddr uint64
		kind  error
		msg   string
	}{
		{0x0, ErrBadELF, "overlaps Flint's real-mode IVT"},
		{0x7800, ErrBadELF, "overlaps Flint's zero page or PVH start info"},
		{0x1f000, ErrBadELF, "overlaps Flint's kernel command line"},
		{0x9f000, ErrBadELF, "overlaps Flint's EBDA"},
		{32<<20 - 0x1000, ErrNoFit, "PT_LOAD 0 [0x1fff000, 0x2002000) does not fit in guest RAM, which ends at 32 MiB"},
		{mem.MMIOHoleStart - 0x1000, ErrBadELF, "PT_LOAD 0 [0xbffff000, 0xc0002000) reaches past 0xc0000000, where the MMIO hole starts"},
		{1 << 32, ErrBadELF, "PT_LOAD 0 [0x100000000, 0x100003000) reaches past 0xc0000000"},
	} {
		f := defaultELF()
		f.phdrs[0].paddr = c.paddr
		f.phdrs[1].paddr = 30 << 20
		f.at[fakeNoteOff] = fakeNotes(false)
		f.phdrs[2].filesz = uint64(len(fakeNotes(false)))
		f.entry = f.phdrs[1].vaddr
		k := f.bytes()
		for name, err := range map[string]error{"Load": loadErr(m, Config{Kernel: k}), "CheckKernel": CheckKernel(k, 32<<20, EntryAuto)} {
			if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("%s at %#x: %v, want %v containing %q", name, c.paddr, err, c.kind, c.msg)
			}
		}
	}
	// 1 MiB and just below the end of RAM are fine.
	f := defaultELF()
	f.phdrs[0].paddr, f.phdrs[1].paddr, f.entry = KernelAddr, 32<<20-0x800, KernelAddr
	f.at[fakeNoteOff], f.phdrs[2].filesz = xenNote(8, KernelAddr+4), 24
	if err := CheckKernel(f.bytes(), 32<<20, EntryAuto); err != nil {
		t.Error(err)
	}
	if err := loadErr(m, Config{Kernel: f.bytes()}); err != nil {
		t.Error(err)
	}
}

func loadErr(m *mem.Memory, cfg Config) error {
	_, err := Load(m, cfg)
	return err
}

func TestEntryPathChoice(t *testing.T) {
	withPVH := defaultELF().bytes()
	f := defaultELF()
	f.at[fakeNoteOff] = fakeNotes(false)
	f.phdrs[2].filesz = uint64(len(fakeNotes(false)))
	noPVH := f.bytes()
	bz := defaultFake().bytes()
	m := newMem(t, 64<<20)
	for _, c := range []struct {
		name   string
		kernel []byte
		entry  EntryPath
		want   EntryPath
		msg    string
	}{
		{"ELF+note auto", withPVH, EntryAuto, EntryPVH, ""},
		{"ELF+note linux64", withPVH, EntryLinux64, EntryLinux64, ""},
		{"ELF+note pvh", withPVH, EntryPVH, EntryPVH, ""},
		{"ELF auto", noPVH, EntryAuto, EntryLinux64, ""},
		{"ELF pvh", noPVH, EntryPVH, "", "has no PVH entry note"},
		{"bzImage auto", bz, EntryAuto, EntryLinux64, ""},
		{"bzImage pvh", bz, EntryPVH, "", "the PVH entry needs an ELF vmlinux"},
		{"bad value", withPVH, "pvh32", "", `kernel entry "pvh32": want "pvh" or "linux64"`},
	} {
		e, err := Load(m, Config{Kernel: c.kernel, Entry: c.entry})
		cerr := CheckKernel(c.kernel, 64<<20, c.entry)
		if c.msg != "" {
			if err == nil || !strings.Contains(err.Error(), c.msg) || cerr == nil || cerr.Error() != err.Error() {
				t.Errorf("%s: Load %v, CheckKernel %v, want %q", c.name, err, cerr, c.msg)
			}
			if !errors.Is(err, ErrInvalidKernel) && !errors.Is(err, ErrBootConfig) {
				t.Errorf("%s: %v is neither a kernel nor a configuration error", c.name, err)
			}
			continue
		}
		if err != nil || cerr != nil {
			t.Errorf("%s: Load %v, CheckKernel %v", c.name, err, cerr)
			continue
		}
		if e.Placement.EntryPath != c.want {
			t.Errorf("%s: entry path %s, want %s", c.name, e.Placement.EntryPath, c.want)
		}
	}
}

// loadELF loads an ELF kernel into fresh RAM pre-filled with junk and
// checks the segments, the bss and the command line and initrd.
func loadELF(t *testing.T, kernel []byte, entry EntryPath, initrd []byte, cmdline string) (*mem.Memory, *Entry) {
	t.Helper()
	m := newMem(t, 64<<20)
	junk, _ := m.Slice(0, 4<<20)
	for i := range junk {
		junk[i] = 0xcc
	}
	e, err := Load(m, Config{Kernel: kernel, Initrd: initrd, Cmdline: cmdline, CPUs: 2, ACPI: acpiConfig(), Entry: entry})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := m.Slice(fakeCode, 0x3000)
	want := append(bytes.Repeat([]byte{0x90}, 0x2000), make([]byte, 0x1000)...)
	if !bytes.Equal(got, want) {
		t.Error("segment 0 (code and zeroed bss) not loaded at its p_paddr")
	}
	if got, _ := m.Slice(fakeData, 0x801); !bytes.Equal(got[:0x800], bytes.Repeat([]byte{0xd7}, 0x800)) || got[0x800] != 0xcc {
		t.Error("segment 1 not loaded at its p_paddr, or more than its memsz written")
	}
	p := e.Placement
	if p.Format != FormatELF || p.KernelAddr != fakeCode || p.KernelEnd != fakeData+0x800 {
		t.Errorf("placement %+v", p)
	}
	if p.InitrdAddr < p.KernelEnd || p.InitrdAddr+p.InitrdSize > 64<<20 || p.InitrdAddr%pageSize != 0 {
		t.Errorf("initrd at %#x+%#x", p.InitrdAddr, p.InitrdSize)
	}
	if got, _ := m.Slice(p.InitrdAddr, p.InitrdSize); !bytes.Equal(got, initrd) {
		t.Error("initrd not written")
	}
	if got, _ := m.Slice(CmdlineAddr, uint64(len(cmdline)+1)); string(got) != cmdline+"\x00" {
		t.Errorf("command line %q", got)
	}
	checkPageTables(t, m)
	return m, e
}

func TestLoadELFPVH(t *testing.T) {
	initrd := bytes.Repeat([]byte{0x5a}, 5000)
	m, e := loadELF(t, defaultELF().bytes(), EntryAuto, initrd, "console=ttyS0")
	p := e.Placement
	if p.EntryPath != EntryPVH {
		t.Fatalf("entry path %s", p.EntryPath)
	}
	// hvm_start_info.
	for _, c := range []struct {
		off, want uint64
		size      int
	}{
		{0x00, PVHStartMagic, 4}, {0x04, 1, 4}, {0x08, 0, 4}, {0x0c, 1, 4},
		{0x10, PVHModlistAddr, 8}, {0x18, CmdlineAddr, 8}, {0x20, p.ACPI.RSDP, 8},
		{0x28, PVHMemmapAddr, 8}, {0x30, uint64(len(p.E820)), 4}, {0x34, 0, 4},
		// The initrd module.
		{PVHModlistAddr - PVHStartInfoAddr, p.InitrdAddr, 8}, {PVHModlistAddr - PVHStartInfoAddr + 8, 5000, 8},
		{PVHModlistAddr - PVHStartInfoAddr + 16, 0, 8}, {PVHModlistAddr - PVHStartInfoAddr + 24, 0, 8},
	} {
		var got uint64
		if c.size == 4 {
			got = u32(t, m, PVHStartInfoAddr+c.off)
		} else {
			got = u64(t, m, PVHStartInfoAddr+c.off)
		}
		if got != c.want {
			t.Errorf("hvm_start_info+%#x = %#x, want %#x", c.off, got, c.want)
		}
	}
	if p.ACPI == nil || p.ACPI.RSDP == 0 || len(p.E820) < 3 {
		t.Fatalf("ACPI %+v, e820 %+v", p.ACPI, p.E820)
	}
	for i, want := range p.E820 {
		a := PVHMemmapAddr + uint64(i)*pvhMemmapEntrySize
		if got := (E820Entry{u64(t, m, a), u64(t, m, a+8), uint32(u32(t, m, a+16))}); got != want || u32(t, m, a+20) != 0 {
			t.Errorf("memmap[%d] = %+v, want %+v", i, got, want)
		}
	}
	// The register state of the PVH ABI.
	if e.RIP != fakePVH || e.RBX != PVHStartInfoAddr || e.RSI != 0 || e.RFLAGS != RFLAGSRe {
		t.Errorf("RIP %#x RBX %#x RSI %#x RFLAGS %#x", e.RIP, e.RBX, e.RSI, e.RFLAGS)
	}
	if e.CR0 != CR0PE|CR0ET || e.CR3 != 0 || e.CR4 != 0 || e.EFER != 0 {
		t.Errorf("CR0 %#x CR3 %#x CR4 %#x EFER %#x", e.CR0, e.CR3, e.CR4, e.EFER)
	}
	if cs := e.CS; cs.Base != 0 || cs.Limit != 0xffffffff || cs.DB != 1 || cs.L != 0 || cs.Type != 0xb || cs.S != 1 || cs.Selector != SelectorCode32 {
		t.Errorf("CS %+v", cs)
	}
	for _, s := range []Segment{e.DS, e.ES, e.SS} {
		if s.Base != 0 || s.Limit != 0xffffffff || s.DB != 1 || s.Type != 0x3 {
			t.Errorf("data segment %+v", s)
		}
	}
	if e.TR.Limit != 0x67 || e.TR.Type != 0xb || e.TR.Base != 0 {
		t.Errorf("TR %+v", e.TR)
	}
	if d := u64(t, m, GDTAddr+SelectorCode32); d != code32Segment.Descriptor() {
		t.Errorf("GDT has no 32-bit code segment at %#x: %#x", SelectorCode32, d)
	}
}

func TestLoadELFLinux64(t *testing.T) {
	initrd := bytes.Repeat([]byte{0x5a}, 5000)
	m, e := loadELF(t, defaultELF().bytes(), EntryLinux64, initrd, "console=ttyS0 panic=-1")
	p := e.Placement
	if p.EntryPath != EntryLinux64 || e.RIP != fakeEntry64 || e.RSI != ZeroPageAddr || e.RBX != 0 || e.RSP != BootStackPointer {
		t.Fatalf("path %s RIP %#x RSI %#x RBX %#x", p.EntryPath, e.RIP, e.RSI, e.RBX)
	}
	checkGDT(t, m, e)
	zp := ZeroPageAddr
	for _, c := range []struct {
		name      string
		off, want uint64
		size      int
	}{
		{"boot_flag", offBootFlag, BootFlag, 2}, {"header", offHeaderMagic, HeaderMagic, 4},
		{"version", offVersion, elfHeaderVersion, 2}, {"type_of_loader", offTypeOfLoader, typeOfLoaderAny, 1},
		{"loadflags", offLoadFlags, LoadedHigh, 1}, {"cmd_line_ptr", offCmdLinePtr, CmdlineAddr, 4},
		{"cmdline_size", offCmdlineSize, elfCmdlineSize, 4}, {"ramdisk_image", offRamdiskImage, p.InitrdAddr, 4},
		{"ramdisk_size", offRamdiskSize, 5000, 4}, {"code32_start", offCode32Start, fakeCode, 4},
		{"acpi_rsdp_addr", zpACPIRSDPAddr, p.ACPI.RSDP, 8}, {"e820_entries", zpE820Entries, uint64(len(p.E820)), 1},
		{"setup_data", zpSetupData, 0, 8},
	} {
		var got uint64
		switch c.size {
		case 1:
			got = uint64(must8(t, m, zp+c.off))
		case 2:
			got = u32(t, m, zp+c.off) & 0xffff
		case 4:
			got = u32(t, m, zp+c.off)
		default:
			got = u64(t, m, zp+c.off)
		}
		if got != c.want {
			t.Errorf("zero page %s = %#x, want %#x", c.name, got, c.want)
		}
	}
	for i, want := range p.E820 {
		a := zp + zpE820Table + uint64(i)*e820EntrySize
		if got := (E820Entry{u64(t, m, a), u64(t, m, a+8), uint32(u32(t, m, a+16))}); got != want {
			t.Errorf("e820[%d] = %+v, want %+v", i, got, want)
		}
	}
	// The ELF's command line limit is x86's COMMAND_LINE_SIZE.
	if err := loadErr(m, Config{Kernel: defaultELF().bytes(), Cmdline: strings.Repeat("x", 2048)}); !errors.Is(err, ErrCmdline) {
		t.Errorf("2048-byte command line: %v", err)
	}
}

// FuzzLoadELF feeds arbitrary files to ParseELF and Load: never a panic,
// errors are one line, and what is accepted is consistent with the file.
func FuzzLoadELF(f *testing.F) {
	f.Add(defaultELF().bytes())
	noPVH := defaultELF()
	noPVH.at[fakeNoteOff] = fakeNotes(false)
	noPVH.phdrs[2].filesz = uint64(len(fakeNotes(false)))
	f.Add(noPVH.bytes())
	f.Add(defaultELF().bytes()[:elfHeaderSize+2*elfPhdrSize])
	f.Add(elfMagic)
	m, err := mem.New(4 << 20)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { m.Close() })
	f.Fuzz(func(t *testing.T, image []byte) {
		k, err := ParseELF(image)
		if err != nil {
			if k != nil || !errors.Is(err, ErrInvalidKernel) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("bad error %q (kernel %v)", err, k)
			}
		} else {
			for i, s := range k.Segments {
				if s.Offset+s.Filesz > uint64(len(image)) || s.Filesz > s.Memsz || s.Memsz == 0 || s.Paddr < k.Start || s.End() > k.End {
					t.Fatalf("accepted segment %+v of a %d-byte file", s, len(image))
				}
				for _, o := range k.Segments[:i] {
					if s.Paddr < o.End() && o.Paddr < s.End() {
						t.Fatalf("overlapping segments %+v %+v", s, o)
					}
				}
			}
			if !k.loaded(k.Entry64) || (k.HasPVH && (!k.loaded(k.PVHEntry) || k.PVHEntry >= 1<<32)) {
				t.Fatalf("entries outside the loaded bytes: %+v", k)
			}
		}
		e, lerr := Load(m, Config{Kernel: image, Initrd: []byte{1, 2, 3}, Cmdline: "x"})
		switch {
		case lerr == nil && (err != nil || (e.RIP != k.Entry64 && e.RIP != k.PVHEntry)):
			t.Fatalf("Load accepted what ParseELF refused (%v), or entered at %#x", err, e.RIP)
		case lerr != nil && (!errors.Is(lerr, ErrInvalidKernel) && !errors.Is(lerr, ErrBootConfig) || strings.Contains(lerr.Error(), "\n")):
			t.Fatalf("bad Load error %q", lerr)
		}
	})
}

// TestInitrdAboveLowELF: an ELF kernel that ends below 1 MiB does not let
// the initrd reach down over Flint's areas there (the EBDA and ACPI
// tables, the command line, the zero page): an initrd that fits only
// there is refused, one that fits from 1 MiB up goes there.
func TestInitrdAboveLowELF(t *testing.T) {
	f := defaultELF()
	f.phdrs[0].paddr, f.phdrs[1].paddr, f.entry = 0x40000, 0x50000, 0x40000
	f.at[fakeNoteOff] = fakeNotes(false)
	f.phdrs[2].filesz = uint64(len(fakeNotes(false)))
	k := f.bytes()
	const ram = 16 << 20
	m := newMem(t, ram)
	err := loadErr(m, Config{Kernel: k, Initrd: make([]byte, ram-0x80000), CPUs: 1, ACPI: acpiConfig()})
	if !errors.Is(err, ErrNoFit) || !strings.Contains(err.Error(), "initrd (15.5 MiB) does not fit") {
		t.Errorf("initrd that fits only below 1 MiB: %v", err)
	}
	initrd := bytes.Repeat([]byte{0xa5}, int(ram-KernelAddr))
	e, err := Load(m, Config{Kernel: k, Initrd: initrd, CPUs: 1, ACPI: acpiConfig()})
	if err != nil {
		t.Fatal(err)
	}
	if p := e.Placement; p.InitrdAddr != KernelAddr {
		t.Errorf("initrd at %#x, want %#x", p.InitrdAddr, KernelAddr)
	}
	if got, _ := m.Slice(KernelAddr, uint64(len(initrd))); !bytes.Equal(got, initrd) {
		t.Error("initrd overwritten")
	}
}
