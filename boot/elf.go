package boot

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/flintvm/flint/mem"
)

// ELF64 constants (the System V gABI and its x86-64 supplement).
const (
	elfHeaderSize  = 64
	elfPhdrSize    = 56
	elfClass64     = 2
	elfDataLSB     = 1
	elfVersion     = 1
	elfTypeExec    = 2
	elfMachineX64  = 62
	elfPTLoad      = 1
	elfPTNote      = 4
	elfPhnumEscape = 0xffff // PN_XNUM: the count lives in section 0

	// maxELFPhdrs bounds the program headers Flint reads (a vmlinux has 5).
	maxELFPhdrs = 64
	// maxPhysAddr is the highest guest-physical address a segment may reach.
	maxPhysAddr = 1 << 46

	// XenNotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY, the "Xen" note whose
	// descriptor is the kernel's 32-bit PVH entry point.
	XenNotePhys32Entry = 18
)

// elfMagic starts every ELF file.
var elfMagic = []byte{0x7f, 'E', 'L', 'F'}

// ErrBadELF: an ELF kernel's headers are inconsistent (out of the file,
// overlapping, bogus sizes). It matches ErrInvalidKernel too.
var ErrBadELF = errors.New("malformed ELF kernel")

// IsELF reports whether image is an ELF file (by its magic): Flint then
// boots it as a vmlinux, anything else as a bzImage.
func IsELF(image []byte) bool { return bytes.HasPrefix(image, elfMagic) }

// ELFSegment is one PT_LOAD program header: Filesz bytes at file offset
// Offset go to guest-physical Paddr, and the rest of Memsz is zeroed.
type ELFSegment struct {
	Index                        int // program header index, for messages
	Offset, Paddr, Filesz, Memsz uint64
}

// End is one past the segment's last guest-physical byte.
func (s ELFSegment) End() uint64 { return s.Paddr + s.Memsz }

// ELFKernel is a validated 64-bit x86 ELF vmlinux: where it loads and
// where it is entered.
type ELFKernel struct {
	// Segments are the non-empty PT_LOAD segments, in file order; they do
	// not overlap each other.
	Segments []ELFSegment
	// Start and End bound every segment's guest-physical range.
	Start, End uint64
	// Entry64 is the guest-physical 64-bit entry point (startup_64).
	Entry64 uint64
	// PVHEntry is the 32-bit PVH entry point, valid when HasPVH.
	PVHEntry uint64
	HasPVH   bool
}

// ParseELF checks the ELF vmlinux image as far as it can without guest
// memory: a little-endian ELF64 executable for x86-64, every program
// header inside the file, every PT_LOAD with filesz <= memsz, inside the
// physical address space and overlapping no other, at least one of them,
// every note well-formed, and both entry points inside loaded code. It
// never panics, whatever the input; the result does not alias image.
func ParseELF(image []byte) (*ELFKernel, error) {
	if !IsELF(image) {
		return nil, kernelErr(ErrBadELF, "not an ELF file (no \\x7fELF magic)")
	}
	if len(image) < elfHeaderSize {
		return nil, kernelErr(ErrKernelTruncated, "ELF truncated: file has %d bytes, the ELF64 header needs %d", len(image), elfHeaderSize)
	}
	switch {
	case image[4] != elfClass64:
		return nil, kernelErr(ErrUnsupportedKernel, "ELF class %d: need a 64-bit (ELFCLASS64) x86-64 vmlinux", image[4])
	case image[5] != elfDataLSB:
		return nil, kernelErr(ErrUnsupportedKernel, "ELF data encoding %d: need little-endian (ELFDATA2LSB)", image[5])
	case image[6] != elfVersion || le.Uint32(image[20:]) != elfVersion:
		return nil, kernelErr(ErrBadELF, "ELF version %d/%d, want 1", image[6], le.Uint32(image[20:]))
	}
	if t := le.Uint16(image[16:]); t != elfTypeExec {
		return nil, kernelErr(ErrUnsupportedKernel, "ELF type %d: need an executable (ET_EXEC) vmlinux", t)
	}
	if m := le.Uint16(image[18:]); m != elfMachineX64 {
		return nil, kernelErr(ErrUnsupportedKernel, "ELF machine %d: need x86-64 (EM_X86_64, 62)", m)
	}
	entry, phoff := le.Uint64(image[24:]), le.Uint64(image[32:])
	phentsize, phnum := le.Uint16(image[54:]), le.Uint16(image[56:])
	switch {
	case phnum == 0:
		return nil, kernelErr(ErrBadELF, "ELF has no program headers")
	case phnum == elfPhnumEscape || phnum > maxELFPhdrs:
		return nil, kernelErr(ErrBadELF, "ELF has %d program headers, Flint reads at most %d", phnum, maxELFPhdrs)
	case phentsize != elfPhdrSize:
		return nil, kernelErr(ErrBadELF, "ELF program header size %d, want %d", phentsize, elfPhdrSize)
	}
	size := uint64(len(image))
	if phoff > size || uint64(phnum)*elfPhdrSize > size-phoff {
		return nil, kernelErr(ErrKernelTruncated, "ELF program headers [%#x, +%d*%d) are outside the %d-byte file", phoff, phnum, elfPhdrSize, size)
	}

	k := &ELFKernel{}
	var notes []ELFSegment
	for i := 0; i < int(phnum); i++ {
		ph := image[phoff+uint64(i)*elfPhdrSize:][:elfPhdrSize]
		typ := le.Uint32(ph)
		s := ELFSegment{Index: i, Offset: le.Uint64(ph[8:]), Paddr: le.Uint64(ph[24:]),
			Filesz: le.Uint64(ph[32:]), Memsz: le.Uint64(ph[40:])}
		if typ != elfPTLoad && typ != elfPTNote {
			continue
		}
		if s.Offset > size || s.Filesz > size-s.Offset {
			return nil, kernelErr(ErrKernelTruncated, "ELF program header %d: file range [%#x, +%#x) is outside the %d-byte file", i, s.Offset, s.Filesz, size)
		}
		if typ == elfPTNote {
			notes = append(notes, s)
			continue
		}
		if s.Filesz > s.Memsz {
			return nil, kernelErr(ErrBadELF, "ELF PT_LOAD %d: filesz %#x is larger than memsz %#x", i, s.Filesz, s.Memsz)
		}
		if s.Memsz == 0 {
			continue
		}
		if s.Paddr >= maxPhysAddr || s.Memsz > maxPhysAddr-s.Paddr {
			return nil, kernelErr(ErrBadELF, "ELF PT_LOAD %d: physical range [%#x, +%#x) is beyond %#x", i, s.Paddr, s.Memsz, uint64(maxPhysAddr))
		}
		for _, o := range k.Segments {
			if s.Paddr < o.End() && o.Paddr < s.End() {
				return nil, kernelErr(ErrBadELF, "ELF PT_LOAD %d [%#x, %#x) overlaps PT_LOAD %d [%#x, %#x)", i, s.Paddr, s.End(), o.Index, o.Paddr, o.End())
			}
		}
		if len(k.Segments) == 0 {
			k.Start, k.End = s.Paddr, s.End()
		}
		k.Start, k.End = min(k.Start, s.Paddr), max(k.End, s.End())
		k.Segments = append(k.Segments, s)
	}
	if len(k.Segments) == 0 {
		return nil, kernelErr(ErrBadELF, "ELF has no loadable (PT_LOAD) segment")
	}
	for _, n := range notes {
		if err := k.readNotes(image, n); err != nil {
			return nil, err
		}
	}
	var err error
	if k.Entry64, err = k.physicalEntry(image, entry); err != nil {
		return nil, err
	}
	return k, nil
}

// physicalEntry turns e_entry into the guest-physical 64-bit entry point.
// The 64-bit boot protocol enters startup_64 at its physical load address
// with an identity mapping. Linux's vmlinux.lds sets ENTRY(phys_startup_64),
// so e_entry already is that physical address (0x1000000 for Debian's
// kernels): taken as is when it falls inside a PT_LOAD's physical range. A
// linker script that leaves e_entry virtual (0xffffffff81000000-ish) is
// translated through the segment whose virtual range holds it:
// p_paddr + (e_entry - p_vaddr).
func (k *ELFKernel) physicalEntry(image []byte, entry uint64) (uint64, error) {
	if k.loaded(entry) {
		return entry, nil
	}
	phoff := le.Uint64(image[32:])
	for _, s := range k.Segments {
		vaddr := le.Uint64(image[phoff+uint64(s.Index)*elfPhdrSize+16:])
		if entry >= vaddr && entry-vaddr < s.Filesz {
			return s.Paddr + (entry - vaddr), nil
		}
	}
	return 0, kernelErr(ErrBadELF, "ELF entry point %#x is in no PT_LOAD segment's loaded bytes", entry)
}

// loaded reports whether guest-physical address a holds a byte of the file.
func (k *ELFKernel) loaded(a uint64) bool {
	for _, s := range k.Segments {
		if a >= s.Paddr && a-s.Paddr < s.Filesz {
			return true
		}
	}
	return false
}

// readNotes walks the notes of one PT_NOTE segment (namesz, descsz, type,
// then the name and the descriptor, each starting at a multiple of 4 bytes
// from the note's start, or 8 when the segment is 8-aligned; the last
// note's padding may be missing) and records the PVH entry note. A note
// running past its segment is an error.
func (k *ELFKernel) readNotes(image []byte, n ELFSegment) error {
	phoff := le.Uint64(image[32:])
	align := uint64(4)
	if le.Uint64(image[phoff+uint64(n.Index)*elfPhdrSize+48:]) == 8 {
		align = 8
	}
	b := image[n.Offset : n.Offset+n.Filesz]
	for o := uint64(0); o < uint64(len(b)); {
		rest := uint64(len(b)) - o
		if rest < 12 {
			return kernelErr(ErrBadELF, "ELF note at %#x in PT_NOTE %d: %d bytes left, a note header needs 12", n.Offset+o, n.Index, rest)
		}
		namesz, descsz, typ := uint64(le.Uint32(b[o:])), uint64(le.Uint32(b[o+4:])), le.Uint32(b[o+8:])
		// Offsets inside this note; every sum stays far below 2^64.
		descOff := alignUp(12+namesz, align)
		next := alignUp(descOff+descsz, align)
		if next > rest && descOff+descsz != rest {
			return kernelErr(ErrBadELF, "ELF note at %#x in PT_NOTE %d: namesz %d and descsz %d run past the segment (%d bytes left)",
				n.Offset+o, n.Index, namesz, descsz, rest)
		}
		name := b[o+12 : o+12+namesz]
		desc := b[o+descOff : o+descOff+descsz]
		o += min(next, rest)
		if typ != XenNotePhys32Entry || !bytes.Equal(name, []byte("Xen\x00")) {
			continue
		}
		var e uint64
		switch len(desc) {
		case 4:
			e = uint64(le.Uint32(desc))
		case 8:
			e = le.Uint64(desc)
		default:
			return kernelErr(ErrBadELF, "ELF PVH entry note (Xen, type 18) has a %d-byte descriptor, want 4 or 8", len(desc))
		}
		if e >= 1<<32 || !k.loaded(e) {
			return kernelErr(ErrBadELF, "ELF PVH entry point %#x is not a 32-bit address inside a PT_LOAD segment's loaded bytes", e)
		}
		k.PVHEntry, k.HasPVH = e, true
	}
	return nil
}

// flintAreas are the guest-physical ranges Flint's own boot structures
// occupy (see the package comment); no kernel segment may overlap them.
// The initrd is placed above the kernel's end and 1 MiB, so it cannot.
var flintAreas = []struct {
	name string
	r    mem.Range
}{
	{"real-mode IVT, BIOS data area, GDT and IDT", mem.Range{Start: 0, Size: pageSize}},
	{"zero page or PVH start info, boot stack and page tables", mem.Range{Start: ZeroPageAddr, Size: 0xf000 - ZeroPageAddr}},
	{"kernel command line", mem.Range{Start: CmdlineAddr, Size: CmdlineMax}},
	{"EBDA, VGA and BIOS area with the ACPI tables", mem.Range{Start: EBDAStart, Size: KernelAddr - EBDAStart}},
}

// checkPlacement checks that every segment lies in guest RAM below lowEnd
// (the end of the RAM region at address 0, at most the MMIO hole's start)
// and clear of Flint's areas.
func (k *ELFKernel) checkPlacement(lowEnd uint64) error {
	for _, s := range k.Segments {
		for _, a := range flintAreas {
			if s.Paddr < a.r.End() && a.r.Start < s.End() {
				return kernelErr(ErrBadELF, "ELF PT_LOAD %d [%#x, %#x) overlaps Flint's %s [%#x, %#x)",
					s.Index, s.Paddr, s.End(), a.name, a.r.Start, a.r.End())
			}
		}
		if s.End() > mem.MMIOHoleStart {
			// No memory size helps: RAM at 0 never reaches past the hole.
			return kernelErr(ErrBadELF, "ELF PT_LOAD %d [%#x, %#x) reaches past %#x, where the MMIO hole starts: Flint loads a kernel only into the RAM below it",
				s.Index, s.Paddr, s.End(), uint64(mem.MMIOHoleStart))
		}
		if s.End() > lowEnd {
			return configErr(ErrNoFit, "ELF PT_LOAD %d [%#x, %#x) does not fit in guest RAM, which ends at %s (RAM from address 0, below the MMIO hole); give the guest more memory",
				s.Index, s.Paddr, s.End(), mib(lowEnd))
		}
	}
	return nil
}

// write copies every segment into m and zeroes the rest of its memsz
// (the bss).
func (k *ELFKernel) write(m *mem.Memory, image []byte) error {
	for _, s := range k.Segments {
		dst, err := m.Slice(s.Paddr, s.Memsz)
		if err != nil {
			return fmt.Errorf("boot: ELF PT_LOAD %d: %w", s.Index, err)
		}
		n := copy(dst, image[s.Offset:s.Offset+s.Filesz])
		clear(dst[n:])
	}
	return nil
}

// Kernel file formats, as Placement.Format names them.
const (
	FormatBzImage = "bzImage"
	FormatELF     = "ELF vmlinux"
)

// Values of the setup header Flint writes for an ELF vmlinux, which has
// none of its own.
const (
	elfHeaderVersion = 0x020f     // boot protocol 2.15
	elfCmdlineSize   = 2047       // x86 COMMAND_LINE_SIZE (2048) minus the NUL
	elfInitrdAddrMax = 0x7fffffff // the protocol's default initrd limit
	elfKernelAlign   = 2 << 20    // startup_64 runs 2 MiB aligned
)

// elfSetupHeader is the setup header of the zero page for ELF kernel k,
// filled as a boot loader would have found it in a bzImage: boot flag,
// "HdrS", protocol 2.15, 64-bit entry, the kernel's place and size, the
// command line and initrd limits. The kernel reads the version, the
// command line and initrd fields and type_of_loader from it.
func elfSetupHeader(k *ELFKernel) *SetupHeader {
	h := &SetupHeader{
		Version: elfHeaderVersion, LoadFlags: LoadedHigh, XLoadFlags: XLFKernel64,
		KernelAlignment: elfKernelAlign, InitSize: uint32(min(k.End-k.Start, 1<<32-1)),
		CmdlineSize: elfCmdlineSize, InitrdAddrMax: elfInitrdAddrMax, PrefAddress: k.Start,
		HeaderEnd: setupHeaderMaxEnd,
	}
	raw := make([]byte, setupHeaderMaxEnd-offSetupSects)
	at := func(off int) []byte { return raw[off-offSetupSects:] }
	le.PutUint16(at(offBootFlag), BootFlag)
	at(offJump)[0], at(offJump)[1] = 0xeb, byte(setupHeaderMaxEnd-offHeaderMagic)
	le.PutUint32(at(offHeaderMagic), HeaderMagic)
	le.PutUint16(at(offVersion), h.Version)
	at(offLoadFlags)[0] = h.LoadFlags
	le.PutUint32(at(offInitrdAddrMax), h.InitrdAddrMax)
	le.PutUint32(at(offKernelAlign), h.KernelAlignment)
	le.PutUint16(at(offXLoadFlags), h.XLoadFlags)
	le.PutUint32(at(offCmdlineSize), h.CmdlineSize)
	le.PutUint64(at(offPrefAddress), h.PrefAddress)
	le.PutUint32(at(offInitSize), h.InitSize)
	h.Raw = raw
	return h
}
