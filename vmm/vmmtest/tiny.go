// Package vmmtest builds tiny bzImage kernels for tests and benchmarks: a
// valid Linux x86 boot-protocol header (version 2.15, 64-bit entry) around a
// few bytes of hand-assembled machine code. They run under any KVM,
// including software KVM that cannot boot a real kernel, so they exercise
// Flint's loader, vCPU setup, buses and devices end to end.
package vmmtest

import "encoding/binary"

// Program is 64-bit machine code for a tiny kernel's entry point. The boot
// protocol hands it the zero page in RSI.
type Program []byte

// Snippets of x86-64 machine code.
var (
	// PostCode writes 0x01 to the debug port 0x80.
	PostCode = Program{0xb0, 0x01, 0xe6, 0x80}
	// PrintCmdline writes the NUL-terminated command line that
	// boot_params.hdr.cmd_line_ptr ([rsi+0x228]) points at to COM1.
	PrintCmdline = Program{
		0x8b, 0xbe, 0x28, 0x02, 0x00, 0x00, // mov edi, [rsi+0x228]
		0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
		0x8a, 0x07, // loop: mov al, [rdi]
		0x84, 0xc0, // test al, al
		0x74, 0x06, // jz done
		0xee,             // out dx, al
		0x48, 0xff, 0xc7, // inc rdi
		0xeb, 0xf4, // jmp loop
	}
	// ResetViaI8042 pulses the reset line through the keyboard controller.
	ResetViaI8042 = Program{0xb0, 0xfe, 0xe6, 0x64}
	// PowerOffViaACPI writes SLP_EN|SLP_TYP=5 to the ACPI sleep control
	// register at port 0x600.
	PowerOffViaACPI = Program{0x66, 0xba, 0x00, 0x06, 0xb0, 0x34, 0xee}
	// Spin loops forever.
	Spin = Program{0xeb, 0xfe}
	// Halt halts forever (HLT waits in the kernel with an in-kernel irqchip).
	Halt = Program{0xfa, 0xf4, 0xeb, 0xfc} // cli; hlt; jmp hlt
)

// Print returns code that writes s to COM1.
func Print(s string) Program {
	p := Program{0x66, 0xba, 0xf8, 0x03} // mov dx, 0x3f8
	for i := 0; i < len(s); i++ {
		p = append(p, 0xb0, s[i], 0xee) // mov al, c; out dx, al
	}
	return p
}

// Concat joins snippets into one program.
func Concat(ps ...Program) Program {
	var out Program
	for _, p := range ps {
		out = append(out, p...)
	}
	return out
}

// Offsets and values of the setup header (Documentation/arch/x86/boot.rst).
const (
	setupSects      = 1 // setup code is (1+setupSects) 512-byte sectors
	hdrSetupSects   = 0x1f1
	hdrBootFlag     = 0x1fe
	hdrJump         = 0x200
	hdrMagic        = 0x202
	hdrVersion      = 0x206
	hdrLoadflags    = 0x211
	hdrCode32Start  = 0x214
	hdrInitrdMax    = 0x22c
	hdrKernelAlign  = 0x230
	hdrRelocatable  = 0x234
	hdrXLoadflags   = 0x236
	hdrCmdlineSize  = 0x238
	hdrPrefAddress  = 0x258
	hdrInitSize     = 0x260
	hdrEnd          = 0x268
	entry64Offset   = 0x200 // 64-bit entry point within the protected-mode kernel
	protocolVersion = 0x020f
)

// realModeEntry is what a BIOS-style loader (QEMU's linuxboot) runs: it
// jumps to setup+0x200 in real mode. It prints "F\n" and resets, so the same
// image can time other VMMs.
var realModeEntry = []byte{
	0xb0, 0x01, 0xe6, 0x80, // mov al,1; out 0x80,al
	0xba, 0xf8, 0x03, // mov dx,0x3f8
	0xb0, 'F', 0xee, // mov al,'F'; out dx,al
	0xb0, '\n', 0xee, // mov al,'\n'; out dx,al
	0xb0, 0xfe, 0xe6, 0x64, // mov al,0xfe; out 0x64,al
	0xf4, 0xeb, 0xfd, // hlt; jmp hlt
}

// BzImage wraps prog in a bzImage: setup sectors with a boot-protocol
// 2.15 header (LOADED_HIGH, XLF_KERNEL_64, relocatable) and a protected-mode
// kernel whose 64-bit entry (offset 0x200) runs prog and then halts.
func BzImage(prog Program) []byte {
	setupLen := (1 + setupSects) * 512
	kernel := make([]byte, entry64Offset, entry64Offset+len(prog)+16)
	for i := range kernel {
		kernel[i] = 0xf4 // hlt: the 32-bit entry at offset 0 is not used
	}
	kernel = append(kernel, prog...)
	kernel = append(kernel, Halt...)
	img := make([]byte, setupLen, setupLen+len(kernel))
	le := binary.LittleEndian
	img[hdrSetupSects] = setupSects
	le.PutUint16(img[hdrBootFlag:], 0xaa55)
	img[hdrJump] = 0xeb // jmp short past the header to the real-mode code
	img[hdrJump+1] = byte(hdrEnd - (hdrJump + 2))
	copy(img[hdrMagic:], "HdrS")
	le.PutUint16(img[hdrVersion:], protocolVersion)
	img[hdrLoadflags] = 0x01 // LOADED_HIGH
	le.PutUint32(img[hdrCode32Start:], 0x100000)
	le.PutUint32(img[hdrInitrdMax:], 0x7fffffff)
	le.PutUint32(img[hdrKernelAlign:], 0x200000)
	img[hdrRelocatable] = 1
	le.PutUint16(img[hdrXLoadflags:], 0x1) // XLF_KERNEL_64
	le.PutUint32(img[hdrCmdlineSize:], 2047)
	le.PutUint64(img[hdrPrefAddress:], 0x1000000)
	le.PutUint32(img[hdrInitSize:], uint32(len(kernel)+0x1000))
	copy(img[hdrEnd:], realModeEntry)
	return append(img, kernel...)
}
