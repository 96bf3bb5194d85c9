// Package i8042 emulates the PC keyboard controller (an Intel 8042 with a
// PS/2 auxiliary port) with no keyboard and no mouse attached. It exists so
// that guests can reset the machine through it (command 0xFE, as Linux's
// reboot=k does) and so that Linux's i8042 driver probes it quickly and
// quietly.
//
// # Ports
//
// The controller answers on two I/O ports and is inserted on the PIO bus as
// two one-byte devices, leaving ports 0x61-0x63 (system control port B,
// normally handled by KVM's in-kernel PIT) to others:
//
//	bus.Insert(c.DataPort(), i8042.DataPort, 1)       // 0x60
//	bus.Insert(c.CommandPort(), i8042.CommandPort, 1) // 0x64
//
// Port 0x60 reads the output buffer and takes data bytes; port 0x64 reads the
// status register and takes controller commands.
//
// # Behaviour
//
// Implemented commands: 0x20-0x3F read controller RAM (0x20: the command
// byte), 0x60-0x7F write it, 0xA4 (no password), 0xA7/0xA8 disable/enable the
// aux port, 0xA9/0xAB interface tests (0x00 = ok), 0xAA self test (0x55),
// 0xAD/0xAE disable/enable the keyboard port, 0xC0 read input port, 0xD0/0xD1
// read/write output port, 0xD2/0xD3 write the keyboard/aux output buffer
// (loopback, as Linux's AUX and MUX probes use), 0xD4 write to the aux
// device, 0xE0 read test inputs, 0xF0-0xFF pulse output lines. Pulsing
// output line 0 (0xFE and any even 0xF0-0xFE) or writing an output port
// value with bit 0 clear requests a CPU reset through Config.OnReset.
// Unknown commands are ignored.
//
// With Config.Keyboard a minimal PS/2 keyboard answers on the keyboard
// port: it acknowledges every command (0xFA), identifies as an MF2 keyboard
// (0xAB 0x83, 0x41 when translating), passes reset (0xAA), takes the
// parameters of 0xED/0xF3/0xF0, and PressCtrlAltDel types Ctrl-Alt-Del
// (what Firecracker's SendCtrlAltDel does). Linux's atkbd then binds to it.
//
// Otherwise, and always for the aux port, a byte sent to a device (port 0x60
// with no command pending, or after 0xD4) finds nothing attached: the controller answers 0xFE with the time-out bit
// set in the status register, so Linux's atkbd and psmouse give up at once
// instead of waiting for their command time-outs.
//
// Interrupts: when the output buffer holds a keyboard byte and the command
// byte enables it, IRQ 1 is raised; an aux byte raises IRQ 12. Each byte
// read from the buffer lowers the line, so every byte gives the
// edge-triggered PIC a new edge. Linux's probe checks that IRQ 12 works by
// looping a byte through the aux port; without Config.AuxIRQ it waits 250 ms
// and then treats the aux port as absent.
//
// Whether Linux probes at all is up to the ACPI tables: with an FADT of
// revision 2 or later it probes only if IAPC_BOOT_ARCH has the 8042 flag
// (bit 1) or the DSDT declares a PNP0303/PNP0F13 device. Reset via 0xFE
// works either way.
//
// # Locking
//
// One mutex guards the state. IRQLine.SetLevel is called with it held, so
// it must not call back into the controller. OnReset is called with it
// released, on the vCPU goroutine that wrote the command; the guest may
// issue the reset several times (Linux tries ten), so it must be idempotent
// and must not block for long.
//
// The package imports only devices, never kvm.
package i8042

import (
	"errors"
	"sync"

	"github.com/flintvm/flint/devices"
)

// I/O ports and the ISA interrupts of the controller.
const (
	// DataPort is the data port (output buffer / data to devices).
	DataPort = 0x60
	// CommandPort is the status (read) and command (write) port.
	CommandPort = 0x64
	// KeyboardIRQ is the keyboard port's ISA interrupt.
	KeyboardIRQ = 1
	// AuxIRQ is the aux (mouse) port's ISA interrupt.
	AuxIRQ = 12
)

// Status register bits.
const (
	statusOBF     = 0x01 // output buffer full
	statusSys     = 0x04 // system flag (mirrors the command byte)
	statusCommand = 0x08 // last write was to the command port
	statusUnlock  = 0x10 // keyboard not inhibited by the key lock
	statusAuxData = 0x20 // output buffer holds aux data
	statusTimeout = 0x40 // device did not answer
)

// Command byte (controller RAM byte 0) bits.
const (
	ctrKbdInt = 0x01
	ctrAuxInt = 0x02
	ctrSys    = 0x04
	ctrKbdDis = 0x10
	ctrAuxDis = 0x20
	ctrXlate  = 0x40
)

// Replies.
const (
	replySelfTestOK  = 0x55
	replyInterfaceOK = 0x00
	replyNoPassword  = 0xf1
	replyNoDevice    = 0xfe
)

// queueSize matches the 16-byte buffer Linux's i8042_flush expects at most.
const queueSize = 16

// Config wires the controller to the machine. Every field may be left zero.
type Config struct {
	// OnReset is called when the guest pulses the CPU reset line.
	OnReset func()
	// KeyboardIRQ is interrupt line 1; nil leaves it unconnected.
	KeyboardIRQ devices.IRQLine
	// AuxIRQ is interrupt line 12; nil leaves it unconnected.
	AuxIRQ devices.IRQLine
	// Keyboard attaches a minimal PS/2 keyboard (see the package
	// documentation) so that Linux's atkbd binds and PressCtrlAltDel
	// reaches the guest. Without it nothing answers on the keyboard port.
	Keyboard bool
}

type outByte struct {
	v       byte
	aux     bool
	timeout bool
}

// Controller is the emulated 8042. Create it with New; insert DataPort() and
// CommandPort() on the PIO bus.
type Controller struct {
	mu  sync.Mutex
	cfg Config

	ram        [32]byte // ram[0] is the command byte
	outPort    byte
	pending    byte // command waiting for its data byte, or 0
	lastWasCmd bool
	lastRead   byte

	queue [queueSize]outByte
	qHead int
	qLen  int

	kbdLine, auxLine bool // levels last driven

	kbdParam byte // keyboard command waiting for its parameter byte, or 0
}

// New returns a controller in the state a PC BIOS leaves it: keyboard
// interrupt and translation enabled, system flag set, aux port disabled,
// output port 0x03 (reset inactive, A20 on), output buffer empty.
func New(cfg Config) *Controller {
	c := &Controller{cfg: cfg, outPort: 0x03}
	c.ram[0] = ctrKbdInt | ctrSys | ctrXlate | ctrAuxDis
	return c
}

// DataPort returns the device for I/O port 0x60 (size 1).
func (c *Controller) DataPort() devices.Device { return dataPort{c} }

// CommandPort returns the device for I/O port 0x64 (size 1).
func (c *Controller) CommandPort() devices.Device { return commandPort{c} }

type dataPort struct{ c *Controller }

// Read returns the next output-buffer byte.
func (p dataPort) Read(offset uint64, data []byte) {
	if offset != 0 || len(data) == 0 {
		return
	}
	data[0] = p.c.readData()
}

// Write sends a data byte to the controller or a device.
func (p dataPort) Write(offset uint64, data []byte) {
	if offset != 0 || len(data) == 0 {
		return
	}
	p.c.writeData(data[0])
}

type commandPort struct{ c *Controller }

// Read returns the status register.
func (p commandPort) Read(offset uint64, data []byte) {
	if offset != 0 || len(data) == 0 {
		return
	}
	data[0] = p.c.status()
}

// Write issues a controller command.
func (p commandPort) Write(offset uint64, data []byte) {
	if offset != 0 || len(data) == 0 {
		return
	}
	p.c.writeCommand(data[0])
}

func (c *Controller) status() byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := byte(statusUnlock)
	if c.ram[0]&ctrSys != 0 {
		s |= statusSys
	}
	if c.lastWasCmd {
		s |= statusCommand
	}
	if c.qLen > 0 {
		h := c.queue[c.qHead]
		s |= statusOBF
		if h.aux {
			s |= statusAuxData
		}
		if h.timeout {
			s |= statusTimeout
		}
	}
	return s
}

func (c *Controller) readData() byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.qLen == 0 {
		return c.lastRead
	}
	c.lastRead = c.queue[c.qHead].v
	c.qHead = (c.qHead + 1) % queueSize
	c.qLen--
	// The buffer is empty for a moment before the next byte moves in: drop
	// both lines so the next byte is a fresh edge.
	c.drive(false, false)
	c.updateIRQ()
	return c.lastRead
}

func (c *Controller) writeData(v byte) {
	c.mu.Lock()
	c.lastWasCmd = false
	cmd := c.pending
	c.pending = 0
	reset := false
	switch {
	case cmd >= 0x60 && cmd <= 0x7f:
		c.ram[cmd&0x1f] = v
	case cmd == 0xd1:
		c.outPort = v
		reset = v&0x01 == 0
	case cmd == 0xd2:
		c.push(outByte{v: v})
	case cmd == 0xd3:
		c.push(outByte{v: v, aux: true})
	case cmd == 0xd4:
		c.push(outByte{v: replyNoDevice, aux: true, timeout: true})
	case c.cfg.Keyboard:
		c.keyboardByte(v)
	default:
		// A byte for the keyboard, which is not there.
		c.push(outByte{v: replyNoDevice, timeout: true})
	}
	c.updateIRQ()
	c.mu.Unlock()
	if reset {
		c.reset()
	}
}

func (c *Controller) writeCommand(cmd byte) {
	c.mu.Lock()
	c.lastWasCmd = true
	c.pending = 0
	reset := false
	switch {
	case cmd >= 0x20 && cmd <= 0x3f:
		c.push(outByte{v: c.ram[cmd&0x1f]})
	case cmd >= 0x60 && cmd <= 0x7f, cmd >= 0xd1 && cmd <= 0xd4:
		c.pending = cmd
	case cmd == 0xa4:
		c.push(outByte{v: replyNoPassword})
	case cmd == 0xa7:
		c.ram[0] |= ctrAuxDis
	case cmd == 0xa8:
		c.ram[0] &^= ctrAuxDis
	case cmd == 0xa9, cmd == 0xab:
		c.push(outByte{v: replyInterfaceOK})
	case cmd == 0xaa:
		c.push(outByte{v: replySelfTestOK})
	case cmd == 0xad:
		c.ram[0] |= ctrKbdDis
	case cmd == 0xae:
		c.ram[0] &^= ctrKbdDis
	case cmd == 0xc0:
		// Input port: keyboard not inhibited, no jumpers.
		c.push(outByte{v: 0x80})
	case cmd == 0xd0:
		c.push(outByte{v: c.outputPort()})
	case cmd == 0xe0:
		c.push(outByte{v: 0x00})
	case cmd >= 0xf0:
		// Bits 0-3 clear select the output lines to pulse; line 0 is reset.
		reset = cmd&0x01 == 0
	}
	c.updateIRQ()
	c.mu.Unlock()
	if reset {
		c.reset()
	}
}

// outputPort returns the output port with its buffer-full lines (bit 4:
// keyboard byte waiting, bit 5: aux byte waiting) filled in.
func (c *Controller) outputPort() byte {
	v := c.outPort &^ 0x30
	if c.qLen > 0 {
		if c.queue[c.qHead].aux {
			v |= 0x20
		} else {
			v |= 0x10
		}
	}
	return v
}

func (c *Controller) reset() {
	if c.cfg.OnReset != nil {
		c.cfg.OnReset()
	}
}

// push appends a byte to the output buffer; when full, the byte is lost as
// a device's would be.
func (c *Controller) push(b outByte) {
	if c.qLen == queueSize {
		return
	}
	c.queue[(c.qHead+c.qLen)%queueSize] = b
	c.qLen++
}

// updateIRQ drives both lines to the levels the state implies.
func (c *Controller) updateIRQ() {
	var kbd, aux bool
	if c.qLen > 0 {
		if c.queue[c.qHead].aux {
			aux = c.ram[0]&ctrAuxInt != 0
		} else {
			kbd = c.ram[0]&ctrKbdInt != 0
		}
	}
	c.drive(kbd, aux)
}

func (c *Controller) drive(kbd, aux bool) {
	if kbd != c.kbdLine {
		c.kbdLine = kbd
		if c.cfg.KeyboardIRQ != nil {
			_ = c.cfg.KeyboardIRQ.SetLevel(kbd)
		}
	}
	if aux != c.auxLine {
		c.auxLine = aux
		if c.cfg.AuxIRQ != nil {
			_ = c.cfg.AuxIRQ.SetLevel(aux)
		}
	}
}

// Keyboard answers.
const (
	kbdAck      = 0xfa
	kbdBATOK    = 0xaa // basic assurance test passed
	kbdEcho     = 0xee
	kbdIDFirst  = 0xab // MF2 keyboard id
	kbdID2      = 0x83
	kbdID2Xlate = 0x41 // the id's second byte as a translating controller passes it on
)

// keyboardByte is the attached keyboard's answer to a byte from the
// guest: every command is acknowledged; GETID answers an MF2 keyboard, reset
// passes its self test, and the commands that take a parameter (set LEDs,
// typematic rate, scan code set) wait for it. Called with mu held.
func (c *Controller) keyboardByte(v byte) {
	if cmd := c.kbdParam; cmd != 0 {
		c.kbdParam = 0
		c.push(outByte{v: kbdAck})
		if cmd == 0xf0 && v == 0 { // which scan code set: 2 (translated: 0x41)
			c.push(outByte{v: c.xlate(0x02, 0x41)})
		}
		return
	}
	switch v {
	case 0xed, 0xf3, 0xf0:
		c.kbdParam = v
		c.push(outByte{v: kbdAck})
	case 0xf2:
		c.push(outByte{v: kbdAck})
		c.push(outByte{v: kbdIDFirst})
		c.push(outByte{v: c.xlate(kbdID2, kbdID2Xlate)})
	case 0xff:
		c.push(outByte{v: kbdAck})
		c.push(outByte{v: kbdBATOK})
	case 0xee:
		c.push(outByte{v: kbdEcho})
	default: // enable, disable, defaults, typematic modes, resend
		c.push(outByte{v: kbdAck})
	}
}

// xlate picks a set-2 byte or its set-1 translation, following the command
// byte's translation bit.
func (c *Controller) xlate(set2, set1 byte) byte {
	if c.ram[0]&ctrXlate != 0 {
		return set1
	}
	return set2
}

// Ctrl-Alt-Del pressed and released: left Ctrl, left Alt, Delete (an
// extended key) down, then up in reverse order.
var (
	ctrlAltDelSet1 = []byte{0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d}
	ctrlAltDelSet2 = []byte{0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14}
)

// ErrNoKeyboard and ErrBufferFull are PressCtrlAltDel's failures.
var (
	ErrNoKeyboard = errors.New("i8042: no keyboard attached")
	ErrBufferFull = errors.New("i8042: keyboard buffer full, try again")
)

// PressCtrlAltDel types Ctrl-Alt-Del on the attached keyboard: the scan
// codes (set 1 when the controller translates, as Linux sets it up, set 2
// otherwise) go into the output buffer, one keyboard interrupt each. Linux
// (atkbd and the VT keyboard) then signals init, which reboots the guest.
func (c *Controller) PressCtrlAltDel() error {
	if !c.cfg.Keyboard {
		return ErrNoKeyboard
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	seq := ctrlAltDelSet2
	if c.ram[0]&ctrXlate != 0 {
		seq = ctrlAltDelSet1
	}
	if c.qLen+len(seq) > queueSize {
		return ErrBufferFull
	}
	for _, b := range seq {
		c.push(outByte{v: b})
	}
	c.updateIRQ()
	return nil
}
