package boot

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/flintvm/flint/mem"
)

// Setup header offsets inside a bzImage file (Documentation/arch/x86/boot.rst).
// The same offsets hold inside the zero page, which embeds the header.
const (
	offSetupSects     = 0x1f1
	offBootFlag       = 0x1fe
	offJump           = 0x200
	offHeaderMagic    = 0x202
	offVersion        = 0x206
	offTypeOfLoader   = 0x210
	offLoadFlags      = 0x211
	offCode32Start    = 0x214
	offRamdiskImage   = 0x218
	offRamdiskSize    = 0x21c
	offHeapEndPtr     = 0x224
	offCmdLinePtr     = 0x228
	offInitrdAddrMax  = 0x22c
	offKernelAlign    = 0x230
	offRelocatable    = 0x234
	offXLoadFlags     = 0x236
	offCmdlineSize    = 0x238
	offPrefAddress    = 0x258
	offInitSize       = 0x260
	setupHeaderMaxEnd = 0x290 // edd_mbr_sig_buffer follows the header in boot_params
)

// Boot protocol constants.
const (
	// BootFlag is the value at offset 0x1fe of every bzImage.
	BootFlag = 0xAA55
	// HeaderMagic is "HdrS" read as a little-endian uint32 at offset 0x202.
	HeaderMagic = 0x53726448

	// MinProtocol is the oldest boot protocol accepted (2.06: cmdline_size).
	MinProtocol = 0x0206

	// LoadedHigh (loadflags bit 0): the protected-mode code loads at 1 MiB.
	LoadedHigh = 1 << 0
	// KeepSegments (loadflags bit 6) is obsolete; the loader clears it.
	KeepSegments = 1 << 6
	// CanUseHeap (loadflags bit 7): heap_end_ptr is valid (real-mode setup only).
	CanUseHeap = 1 << 7

	// XLFKernel64 (xloadflags bit 0): the kernel has the 64-bit entry point
	// at load address + 0x200.
	XLFKernel64 = 1 << 0
	// XLFCanBeLoadedAbove4G (xloadflags bit 1): kernel, boot_params,
	// cmdline and initrd may live above 4 GiB.
	XLFCanBeLoadedAbove4G = 1 << 1

	// Entry64Offset is the 64-bit entry point's offset from the load address.
	Entry64Offset = 0x200

	sectorSize = 512
)

var le = binary.LittleEndian

// Errors a malformed or unsupported kernel image produces. Every error
// ParseSetupHeader returns matches ErrInvalidKernel and exactly one of the
// more specific values below (errors.Is); the CLI maps ErrInvalidKernel to
// its usage-error exit code.
var (
	// ErrInvalidKernel matches every problem with the kernel image itself.
	ErrInvalidKernel = errors.New("invalid kernel image")
	// ErrKernelTruncated: the file is shorter than its header says.
	ErrKernelTruncated = errors.New("kernel image truncated")
	// ErrNotBzImage: the file is not an x86 bzImage (no boot flag or "HdrS").
	ErrNotBzImage = errors.New("not a bzImage")
	// ErrUnsupportedKernel: a valid bzImage Flint cannot boot (too old a
	// boot protocol, no 64-bit entry point, not loaded high).
	ErrUnsupportedKernel = errors.New("unsupported kernel")
	// ErrBadHeader: a header field holds an impossible value.
	ErrBadHeader = errors.New("malformed setup header")
)

// Error is a kernel-image or boot-configuration problem. Err is the specific
// sentinel, Class the umbrella one (ErrInvalidKernel or ErrBootConfig); both
// match with errors.Is.
type Error struct {
	Err   error  // the specific sentinel, e.g. ErrKernelTruncated
	Class error  // ErrInvalidKernel or ErrBootConfig
	Msg   string // the description, without the "kernel: " prefix
}

// Error returns the message, prefixed with what it is about.
func (e *Error) Error() string {
	if e.Class == ErrInvalidKernel {
		return "kernel: " + e.Msg
	}
	return "boot: " + e.Msg
}

// Unwrap lets errors.Is match both the specific and the umbrella sentinel.
func (e *Error) Unwrap() []error { return []error{e.Err, e.Class} }

func kernelErr(kind error, format string, args ...any) error {
	return &Error{Err: kind, Class: ErrInvalidKernel, Msg: fmt.Sprintf(format, args...)}
}

// SetupHeader is the validated part of a bzImage setup header that Flint
// uses. Raw holds the header bytes [0x1f1, HeaderEnd) exactly as in the file,
// to be copied into the zero page.
type SetupHeader struct {
	// SetupSects is the number of 512-byte real-mode setup sectors after
	// the boot sector (a 0 in the file already replaced by 4).
	SetupSects int
	// Version is the boot protocol version, e.g. 0x020f for 2.15.
	Version uint16
	// LoadFlags is the loadflags field as found in the file.
	LoadFlags uint8
	// XLoadFlags is the xloadflags field (0 before protocol 2.12).
	XLoadFlags uint16
	// KernelAlignment is the physical alignment the kernel needs.
	KernelAlignment uint32
	// Relocatable reports that the kernel may run at any KernelAlignment
	// aligned address.
	Relocatable bool
	// InitSize is the contiguous memory the kernel needs, from where it
	// runs, before it can read the memory map.
	InitSize uint32
	// CmdlineSize is the longest command line (without its NUL) accepted.
	CmdlineSize uint32
	// InitrdAddrMax is the highest address the initrd may occupy.
	InitrdAddrMax uint32
	// PrefAddress is the preferred load (and run) address.
	PrefAddress uint64
	// HeaderEnd is the file offset one past the setup header
	// (0x202 + the byte at 0x201).
	HeaderEnd int
	// Raw is the header bytes [0x1f1, HeaderEnd), at most up to 0x290.
	Raw []byte
}

// SetupSize is the size in bytes of the real-mode part of the image (boot
// sector plus setup sectors); the protected-mode payload starts there.
func (h *SetupHeader) SetupSize() int { return (h.SetupSects + 1) * sectorSize }

// ProtocolString formats Version as "2.15".
func (h *SetupHeader) ProtocolString() string {
	return fmt.Sprintf("%d.%02d", h.Version>>8, h.Version&0xff)
}

// ParseSetupHeader parses and validates the setup header of the bzImage
// file image. It checks everything Flint relies on to enter the kernel's
// 64-bit entry point and never panics, whatever the input. The returned
// header does not alias image.
func ParseSetupHeader(image []byte) (*SetupHeader, error) {
	n := len(image)
	if n < sectorSize {
		return nil, kernelErr(ErrKernelTruncated, "truncated: file has %d bytes, a bzImage starts with a %d-byte boot sector", n, sectorSize)
	}
	if f := le.Uint16(image[offBootFlag:]); f != BootFlag {
		return nil, kernelErr(ErrNotBzImage, "not a bzImage (boot flag at 0x1fe is %#04x, want 0xaa55)", f)
	}
	if n >= offHeaderMagic+4 && le.Uint32(image[offHeaderMagic:]) != HeaderMagic {
		return nil, kernelErr(ErrNotBzImage, `not a bzImage (no "HdrS" magic at 0x202)`)
	}
	h := &SetupHeader{SetupSects: int(image[offSetupSects])}
	if h.SetupSects == 0 {
		h.SetupSects = 4
	}
	// The setup (at least 1 KiB) contains the whole header, whose end
	// 0x202+255 is below 1 KiB: once it is present, every header read is
	// in bounds.
	if n < h.SetupSize() {
		return nil, kernelErr(ErrKernelTruncated, "truncated: setup needs %d bytes, file has %d", h.SetupSize(), n)
	}
	if n == h.SetupSize() {
		return nil, kernelErr(ErrKernelTruncated, "truncated: no protected-mode code after the %d bytes of setup", h.SetupSize())
	}
	if le.Uint32(image[offHeaderMagic:]) != HeaderMagic {
		return nil, kernelErr(ErrNotBzImage, `not a bzImage (no "HdrS" magic at 0x202)`)
	}
	h.Version = le.Uint16(image[offVersion:])
	if h.Version < MinProtocol {
		return nil, kernelErr(ErrUnsupportedKernel,
			"boot protocol %s is too old (need %d.%02d or later)", h.ProtocolString(), MinProtocol>>8, MinProtocol&0xff)
	}
	if image[offJump] != 0xEB {
		return nil, kernelErr(ErrBadHeader, "no short jump at 0x200 (byte is %#02x), cannot find the end of the setup header", image[offJump])
	}
	h.HeaderEnd = offHeaderMagic + int(image[offJump+1])
	// Fields read below must lie inside the header the jump delimits.
	need := offCmdlineSize + 4
	if h.Version >= 0x020a {
		need = offInitSize + 4
	}
	if h.HeaderEnd < need {
		return nil, kernelErr(ErrBadHeader, "setup header ends at %#x, protocol %s needs it to reach %#x",
			h.HeaderEnd, h.ProtocolString(), need)
	}

	h.LoadFlags = image[offLoadFlags]
	if h.LoadFlags&LoadedHigh == 0 {
		return nil, kernelErr(ErrUnsupportedKernel, "zImage (LOADED_HIGH not set in loadflags): only bzImage kernels are supported")
	}
	if h.Version >= 0x020c {
		h.XLoadFlags = le.Uint16(image[offXLoadFlags:])
	}
	if h.XLoadFlags&XLFKernel64 == 0 {
		return nil, kernelErr(ErrUnsupportedKernel,
			"no 64-bit entry point (XLF_KERNEL_64 not set in xloadflags, boot protocol %s): need a 64-bit x86 kernel, protocol 2.12 or later",
			h.ProtocolString())
	}

	h.InitrdAddrMax = le.Uint32(image[offInitrdAddrMax:])
	h.KernelAlignment = le.Uint32(image[offKernelAlign:])
	h.Relocatable = image[offRelocatable] != 0
	h.CmdlineSize = le.Uint32(image[offCmdlineSize:])
	if h.Version >= 0x020a {
		h.PrefAddress = le.Uint64(image[offPrefAddress:])
		h.InitSize = le.Uint32(image[offInitSize:])
	}
	if h.Relocatable {
		a := h.KernelAlignment
		if a < 4096 || a&(a-1) != 0 {
			return nil, kernelErr(ErrBadHeader, "kernel_alignment %#x is not a power of two of at least 4 KiB", a)
		}
	}
	if h.InitSize == 0 {
		return nil, kernelErr(ErrBadHeader, "init_size is 0")
	}
	if h.PrefAddress > 1<<47 {
		return nil, kernelErr(ErrBadHeader, "pref_address %#x is not a plausible physical address", h.PrefAddress)
	}
	if end := h.runAddress(KernelAddr) + uint64(h.InitSize); end > mem.MMIOHoleStart {
		// No memory size helps: RAM at 0 never reaches past the hole.
		return nil, kernelErr(ErrBadHeader, "init_size %s at run address %#x needs RAM up to %s, past %#x where the MMIO hole starts",
			mib(uint64(h.InitSize)), h.runAddress(KernelAddr), mib(end), uint64(mem.MMIOHoleStart))
	}
	if !h.Relocatable && h.PrefAddress != 0 && h.PrefAddress < KernelAddr {
		// It would decompress itself over the zero page, command line,
		// page tables and ACPI tables.
		return nil, kernelErr(ErrBadHeader, "kernel is not relocatable and runs at pref_address %#x, below 1 MiB", h.PrefAddress)
	}
	if h.InitrdAddrMax < 1<<20 {
		return nil, kernelErr(ErrBadHeader, "initrd_addr_max %#x is below 1 MiB", h.InitrdAddrMax)
	}

	end := min(h.HeaderEnd, setupHeaderMaxEnd)
	h.Raw = append([]byte(nil), image[offSetupSects:end]...)
	return h, nil
}

// runAddress is where a kernel loaded at load runs (decompresses) once it
// has relocated itself: for a relocatable kernel the load address rounded
// up to kernel_alignment, but never below pref_address (the kernel's
// LOAD_PHYSICAL_ADDR); a non-relocatable kernel always runs at pref_address.
func (h *SetupHeader) runAddress(load uint64) uint64 {
	if !h.Relocatable {
		if h.PrefAddress != 0 {
			return h.PrefAddress
		}
		return load
	}
	a := uint64(h.KernelAlignment)
	run := (load + a - 1) &^ (a - 1)
	return max(run, h.PrefAddress)
}
