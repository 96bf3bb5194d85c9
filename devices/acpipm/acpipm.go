// Package acpipm emulates the fixed registers of an ACPI hardware-reduced
// platform (ACPI 6, section 4.8.3.7): the sleep control and sleep status
// registers, through which the guest powers the machine off, and a reset
// register through which it reboots.
//
// # Ports
//
// Three consecutive 8-bit I/O ports; insert with
// Insert(pm, acpipm.Base, acpipm.Size).
//
//	0x600 SLEEP_CONTROL_REG: bits 2-4 SLP_TYPx (read/write), bit 5 SLP_EN
//	      (write-only). A write with SLP_EN set calls Config.OnPowerOff,
//	      whatever SLP_TYPx says: the platform offers S5 only.
//	0x601 SLEEP_STATUS_REG: bit 7 WAK_STS, write 1 to clear. It is never
//	      set: the machine does not wake from a sleep state.
//	0x602 RESET_REG: writing any non-zero value calls Config.OnReset.
//
// The FADT (hardware-reduced, flags HW_REDUCED_ACPI | RESET_REG_SUP) should
// describe SLEEP_CONTROL_REG as GAS {I/O, 8 bits, offset 0, byte access,
// 0x600}, SLEEP_STATUS_REG likewise at 0x601, RESET_REG at 0x602 with
// RESET_VALUE ResetValue, and the DSDT's \_S5 package should give
// SleepTypeS5 as the SLP_TYPx value. Linux writes 0x80 to the status
// register, then (SleepTypeS5 << 2) | 0x20 to the control register, then
// polls the status register for WAK_STS; the VMM stops the vCPUs when
// OnPowerOff is called.
//
// # Callbacks
//
// OnPowerOff and OnReset run on the vCPU goroutine that wrote the register,
// with no lock held. A guest can trigger them repeatedly, so they must be
// idempotent and must not block (signal the VMM's run loop and return).
//
// The package imports only devices, never kvm.
package acpipm

import (
	"sync"

	"github.com/flintvm/flint/devices"
)

// Port layout.
const (
	// Base is the first port (the sleep control register).
	Base = 0x600
	// Size is the number of ports the device occupies.
	Size = 3
	// SleepControlPort is the sleep control register.
	SleepControlPort = Base
	// SleepStatusPort is the sleep status register.
	SleepStatusPort = Base + 1
	// ResetPort is the reset register.
	ResetPort = Base + 2
)

// Values for the ACPI tables.
const (
	// SleepTypeS5 is the SLP_TYPx value the DSDT's \_S5 object should
	// carry. (Any value powers off; this is the conventional one.)
	SleepTypeS5 = 5
	// ResetValue is the value the FADT's RESET_VALUE should carry.
	ResetValue = 1
)

const (
	slpTypMask = 0x1c
	slpEn      = 0x20
)

// Config wires the registers to the VMM. Either callback may be nil.
type Config struct {
	// OnPowerOff is called when the guest sets SLP_EN.
	OnPowerOff func()
	// OnReset is called when the guest writes the reset register.
	OnReset func()
}

// Controller holds the registers. Create it with New.
type Controller struct {
	cfg Config

	mu      sync.Mutex
	slpTyp  uint8 // SLP_TYPx as last written, in place (bits 2-4)
	lastTyp uint8 // SLP_TYPx of the last SLP_EN write
}

var _ devices.Device = (*Controller)(nil)

// New returns the registers in their reset state.
func New(cfg Config) *Controller { return &Controller{cfg: cfg} }

// Read implements devices.Device.
func (c *Controller) Read(offset uint64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range data {
		if offset+uint64(i) == 0 {
			data[i] = c.slpTyp
		}
		// The status register's WAK_STS is never set; the reset register
		// reads 0.
	}
}

// Write implements devices.Device.
func (c *Controller) Write(offset uint64, data []byte) {
	var powerOff, reset bool
	c.mu.Lock()
	for i, v := range data {
		switch offset + uint64(i) {
		case 0:
			c.slpTyp = v & slpTypMask
			if v&slpEn != 0 {
				c.lastTyp = c.slpTyp >> 2
				powerOff = true
			}
		case 1:
			// WAK_STS is write-1-to-clear and never set.
		case 2:
			reset = reset || v != 0
		}
	}
	c.mu.Unlock()
	if powerOff && c.cfg.OnPowerOff != nil {
		c.cfg.OnPowerOff()
	}
	if reset && c.cfg.OnReset != nil {
		c.cfg.OnReset()
	}
}

// LastSleepType returns the SLP_TYPx value of the last write that set
// SLP_EN (0 if none), for logging.
func (c *Controller) LastSleepType() uint8 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastTyp
}
