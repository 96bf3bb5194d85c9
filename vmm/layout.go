package vmm

import "github.com/flintvm/flint/mem"

// The machine's fixed layout: legacy I/O ports, ISA IRQs, and how the 32-bit
// MMIO hole [mem.MMIOHoleStart, 4 GiB) is divided.
const (
	com1Port   = 0x3f8
	com1IRQ    = 4
	i8042Data  = 0x60
	i8042Cmd   = 0x64
	i8042Reset = 0xfe // command that pulses the CPU reset line
	cmosPort   = 0x70
	debugPort  = 0x80
	pciConfig  = 0xcf8
	pciSize    = 8 // 0xcf8-0xcff
	// The ACPI sleep and reset registers sit at acpipm.Base.
)

// MMIO hole layout.
var (
	// pciMMIOWindow is where PCI memory BARs are placed.
	pciMMIOWindow = mem.Range{Start: mem.MMIOHoleStart, Size: 0x2000_0000} // 0xC000_0000-0xE000_0000
	// platformMMIOWindow holds virtio-mmio device windows.
	platformMMIOWindow = mem.Range{Start: 0xE000_0000, Size: 0x1000_0000} // 0xE000_0000-0xF000_0000
)
