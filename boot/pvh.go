package boot

import "github.com/flintvm/flint/mem"

// EntryPath chooses how the BSP enters the kernel.
type EntryPath string

// Entry paths. The empty value picks the PVH entry when the kernel is an
// ELF vmlinux with a PVH note, else the 64-bit Linux entry.
const (
	EntryAuto EntryPath = ""
	// EntryPVH: the PVH boot ABI's 32-bit entry (XEN_ELFNOTE_PHYS32_ENTRY)
	// with EBX pointing at struct hvm_start_info; ELF vmlinux only.
	EntryPVH EntryPath = "pvh"
	// EntryLinux64: the 64-bit Linux boot protocol, long mode with RSI
	// pointing at the zero page (bzImage: load address + 0x200; ELF:
	// startup_64).
	EntryLinux64 EntryPath = "linux64"
)

// Check reports whether p is one of the entry paths.
func (p EntryPath) Check() error {
	switch p {
	case EntryAuto, EntryPVH, EntryLinux64:
		return nil
	}
	return configErr(ErrBootConfig, "kernel entry %q: want %q or %q (or empty for the kernel's own choice)", string(p), EntryPVH, EntryLinux64)
}

// String returns the entry path's name ("auto" for EntryAuto).
func (p EntryPath) String() string {
	if p == EntryAuto {
		return "auto"
	}
	return string(p)
}

// Where the PVH start info goes: in the zero page's place (the PVH path
// has no zero page), with its module list and memory map after it, all
// inside that one page.
const (
	PVHStartInfoAddr uint64 = ZeroPageAddr
	PVHModlistAddr   uint64 = PVHStartInfoAddr + 0x40
	PVHMemmapAddr    uint64 = PVHStartInfoAddr + 0x80

	// PVHStartMagic is hvm_start_info's magic, XEN_HVM_START_MAGIC_VALUE.
	PVHStartMagic = 0x336ec578
	// PVHStartVersion 1 has the memory map fields (memmap_paddr,
	// memmap_entries), which a kernel booted outside Xen needs: without
	// them Linux asks a hypervisor that is not there for the map.
	PVHStartVersion = 1

	pvhStartInfoSize   = 0x38 // struct hvm_start_info, version 1
	pvhModlistSize     = 0x20 // struct hvm_modlist_entry
	pvhMemmapEntrySize = 0x18 // struct hvm_memmap_table_entry
)

// pvhStartInfo builds the PVH boot ABI's structures for p, as one block to
// write at PVHStartInfoAddr: struct hvm_start_info (magic, version 1,
// flags 0, one module (the initrd) if any, the command line, the ACPI RSDP,
// the memory map), then struct hvm_modlist_entry at PVHModlistAddr, then
// the e820 map as struct hvm_memmap_table_entry at PVHMemmapAddr.
func pvhStartInfo(p *Placement) ([]byte, error) {
	if PVHMemmapAddr+uint64(len(p.E820))*pvhMemmapEntrySize > PVHStartInfoAddr+pageSize {
		return nil, configErr(ErrNoFit, "%d memory map entries do not fit in the PVH start info page", len(p.E820))
	}
	b := make([]byte, pageSize)
	le.PutUint32(b[0x00:], PVHStartMagic)
	le.PutUint32(b[0x04:], PVHStartVersion)
	if p.InitrdSize > 0 {
		le.PutUint32(b[0x0c:], 1) // nr_modules
		le.PutUint64(b[0x10:], PVHModlistAddr)
		m := b[PVHModlistAddr-PVHStartInfoAddr:]
		le.PutUint64(m[0x00:], p.InitrdAddr)
		le.PutUint64(m[0x08:], p.InitrdSize)
		// cmdline_paddr 0: the module has no command line of its own.
	}
	le.PutUint64(b[0x18:], CmdlineAddr)
	if p.ACPI != nil {
		le.PutUint64(b[0x20:], p.ACPI.RSDP)
	}
	le.PutUint64(b[0x28:], PVHMemmapAddr)
	le.PutUint32(b[0x30:], uint32(len(p.E820)))
	for i, e := range p.E820 {
		o := PVHMemmapAddr - PVHStartInfoAddr + uint64(i)*pvhMemmapEntrySize
		le.PutUint64(b[o:], e.Addr)
		le.PutUint64(b[o+8:], e.Size)
		le.PutUint32(b[o+16:], e.Type) // e820 and hvm memmap types agree (1 RAM, 2 reserved)
	}
	return b, nil
}

// resolveEntry picks the entry path for a kernel (ELF k, or a bzImage when
// k is nil) and checks that the kernel has it.
func resolveEntry(want EntryPath, k *ELFKernel) (EntryPath, error) {
	if err := want.Check(); err != nil {
		return "", err
	}
	switch {
	case want == EntryPVH && k == nil:
		return "", kernelErr(ErrUnsupportedKernel, "the PVH entry needs an ELF vmlinux with a PVH note; a bzImage boots through the 64-bit entry")
	case want == EntryPVH && !k.HasPVH:
		return "", kernelErr(ErrUnsupportedKernel, "the ELF kernel has no PVH entry note (Xen, XEN_ELFNOTE_PHYS32_ENTRY); boot it through the 64-bit entry")
	case want == EntryAuto && k != nil && k.HasPVH:
		return EntryPVH, nil
	case want == EntryAuto:
		return EntryLinux64, nil
	}
	return want, nil
}

// CheckKernel checks the kernel file image (bzImage or ELF vmlinux, told
// apart by the ELF magic), that it fits a guest of memSize bytes of RAM,
// and the entry path, without any guest memory: what vmm.Config.Validate
// needs before a VM resource exists. Load repeats every check.
func CheckKernel(image []byte, memSize uint64, entry EntryPath) error {
	var k *ELFKernel
	// Layout's first range always starts at 0: the low RAM.
	lowEnd := mem.Layout(memSize)[0].End()
	if IsELF(image) {
		var err error
		if k, err = ParseELF(image); err != nil {
			return err
		}
		if err := k.checkPlacement(lowEnd); err != nil {
			return err
		}
	} else {
		h, err := ParseSetupHeader(image)
		if err != nil {
			return err
		}
		if _, err := placeBzImage(h, len(image), lowEnd); err != nil {
			return err
		}
	}
	_, err := resolveEntry(entry, k)
	return err
}
