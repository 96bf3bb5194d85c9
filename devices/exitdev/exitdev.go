// Package exitdev emulates Flint's exit device: an I/O-port register through
// which the guest agent (Flint's /init in command mode) reports how the
// user's command ended, without any guest driver or kernel module. The agent
// probes the device, writes one 32-bit status word, then powers the guest
// off; the VMM waits on Done (or the OnReport callback) and maps the report
// to the run's exit code.
//
// # Ports
//
// Eight consecutive I/O ports; insert with Insert(d, exitdev.Base, exitdev.Size).
//
//	0xf00-0xf03 read:  Magic, 0x58454c46 ("FLEX" in memory order)
//	0xf00-0xf03 write: the status word (a 32-bit outl at 0xf00; anything
//	                   else is rejected and counted)
//	0xf04-0xf05 read:  Version (2)
//	0xf04       write: progress: one byte, the Stage the agent starts now
//	                   (an 8-bit outb; version 2)
//	0xf06-0xf07 read:  state: bit 0 set once a report has been recorded
//
// Reads of any width at any offset return the bytes of that 8-byte image;
// other writes to 0xf04-0xf07 are rejected. The agent probes with inl(0xf00) ==
// Magic (an absent device reads all ones) before it relies on the device.
//
// Why 0xf00: Linux reserves 0x00-0xff for the PC's chipset (DMA, PIC, PIT,
// keyboard, POST port, FPU); 0x100-0x3ff is ISA card space that drivers
// probe (serial, parallel, IDE, floppy, VGA, sound); above that Flint uses
// 0x600-0x602 (ACPI PM) and 0xcf8-0xcff (PCI config), EISA probes slot IDs at
// 0x?c80, QEMU's conventions take 0x402, 0x501, 0x505 and 0x510; and Linux
// assigns PCI I/O BARs from 0x1000 up (PCIBIOS_MIN_IO), so 0xf00-0xf07
// collides with none of them.
//
// # Status word
//
// Bits 31-28 give the kind, the rest its payload:
//
//	0x1 exited:       bits 7-0 the exit code (0-255); bits 27-8 zero
//	0x2 signaled:     bits 6-0 the signal (1-127), bit 7 core dumped;
//	                  bits 27-8 zero
//	0x3 agent failed: bits 23-16 the Stage, bits 15-0 the errno (0 if
//	                  none); bits 27-24 zero
//
// Build words with Exited, Signaled and AgentFailed; Decode checks them. A
// word of another shape (including the 0 and all-ones a stray write would
// carry) is rejected: counted, never recorded.
//
// # Reports
//
// Only the first valid report is kept; later valid writes are ignored and
// counted (a confused or hostile guest cannot change a verdict after the
// fact). OnReport runs on the vCPU goroutine that wrote, with no lock held,
// exactly once; it must not block. No write of any size or offset panics.
// Progress writes tell the VMM which stage the agent has reached (the
// boot-failure message names it, and the VMM times /init and the command
// from them): StageEarly when /init starts, ..., StageExec before the
// command is started, StageWait once it runs. OnProgress, set with
// SetOnProgress before the guest runs, is called on the vCPU goroutine for
// each valid one (a stage from 1 to 6) until the first report; later ones
// and invalid ones are rejected and counted like bad status words.
//
// The agent powers the guest off right after its report; a VMM that does
// not see the power-off may stop the guest itself a short grace period
// after Done (long enough for late kernel messages to reach the console).
//
// The package imports only devices, never kvm.
package exitdev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/flintvm/flint/devices"
)

// Port layout.
const (
	// Base is the first port of the device.
	Base = 0xf00
	// Size is the number of ports the device occupies.
	Size = 8
	// Magic is what a 32-bit read at Base returns.
	Magic = 0x58454c46
	// Version is the protocol version read at Base+4 (2: progress
	// writes at ProgressOffset).
	Version = 2
	// ProgressOffset is where the agent writes its Stage as one byte.
	ProgressOffset = 4
)

// Kind says how the command ended.
type Kind uint8

// Kinds of report (the status word's bits 31-28).
const (
	// KindExited: the command exited with Report.Code.
	KindExited Kind = 1
	// KindSignaled: the command was killed by Report.Signal.
	KindSignaled Kind = 2
	// KindAgentFailed: the agent could not run the command; Report.Stage
	// says where it stopped and Report.Errno why.
	KindAgentFailed Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindExited:
		return "exited"
	case KindSignaled:
		return "signaled"
	case KindAgentFailed:
		return "agent-failed"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Stage is the agent's step that failed.
type Stage uint8

// Agent stages, in the order the agent runs them.
const (
	// StageEarly: mounting /proc, /sys, /dev and the console (its
	// progress write says /init has started).
	StageEarly Stage = 1
	// StageModules: loading the kernel modules from the initramfs.
	StageModules Stage = 2
	// StageMounts: mounting the shared host directories and overlays.
	StageMounts Stage = 3
	// StageNetwork: bringing up the interfaces --net asked for.
	StageNetwork Stage = 4
	// StageExec: starting the command (ENOENT: not found; EACCES,
	// ENOEXEC...: not executable).
	StageExec Stage = 5
	// StageWait: relaying the command's I/O or waiting for it (its
	// progress write says the command has started).
	StageWait Stage = 6
)

var stageNames = [...]string{
	StageEarly:   "early",
	StageModules: "modules",
	StageMounts:  "mounts",
	StageNetwork: "network",
	StageExec:    "exec",
	StageWait:    "wait",
}

func (s Stage) String() string {
	if int(s) < len(stageNames) && stageNames[s] != "" {
		return stageNames[s]
	}
	return fmt.Sprintf("stage(%d)", uint8(s))
}

// Report is one decoded status word.
type Report struct {
	Kind Kind
	// Code is the exit status (KindExited).
	Code uint8
	// Signal and CoreDumped describe KindSignaled.
	Signal     uint8
	CoreDumped bool
	// Stage and Errno describe KindAgentFailed.
	Stage Stage
	Errno uint16
	// Word is the status word as written.
	Word uint32
}

func (r Report) String() string {
	switch r.Kind {
	case KindExited:
		return fmt.Sprintf("exited with status %d", r.Code)
	case KindSignaled:
		s := fmt.Sprintf("killed by signal %d", r.Signal)
		if r.CoreDumped {
			s += " (core dumped)"
		}
		return s
	case KindAgentFailed:
		return fmt.Sprintf("agent failed at stage %s (errno %d)", r.Stage, r.Errno)
	}
	return fmt.Sprintf("invalid status word %#08x", r.Word)
}

// Exited is the status word for a command that exited with code.
func Exited(code uint8) uint32 { return uint32(KindExited)<<28 | uint32(code) }

// Signaled is the status word for a command killed by sig (1-127).
func Signaled(sig uint8, core bool) uint32 {
	w := uint32(KindSignaled)<<28 | uint32(sig&0x7f)
	if core {
		w |= 0x80
	}
	return w
}

// AgentFailed is the status word for an agent that failed at stage with
// errno (0 if there is none).
func AgentFailed(stage Stage, errno uint16) uint32 {
	return uint32(KindAgentFailed)<<28 | uint32(stage)<<16 | uint32(errno)
}

// ErrInvalid is wrapped by Decode's errors.
var ErrInvalid = errors.New("exitdev: invalid status word")

// Decode checks and decodes a status word.
func Decode(w uint32) (Report, error) {
	r := Report{Kind: Kind(w >> 28), Word: w}
	switch r.Kind {
	case KindExited:
		if w&0x0fffff00 != 0 {
			return r, fmt.Errorf("%w %#08x: exit payload above 8 bits", ErrInvalid, w)
		}
		r.Code = uint8(w)
	case KindSignaled:
		if w&0x0fffff00 != 0 || w&0x7f == 0 {
			return r, fmt.Errorf("%w %#08x: signal must be 1-127 with no other bits", ErrInvalid, w)
		}
		r.Signal, r.CoreDumped = uint8(w&0x7f), w&0x80 != 0
	case KindAgentFailed:
		r.Stage, r.Errno = Stage(w>>16), uint16(w)
		if w&0x0f000000 != 0 || r.Stage == 0 {
			return r, fmt.Errorf("%w %#08x: agent failure needs a stage and no bits 27-24", ErrInvalid, w)
		}
	default:
		return r, fmt.Errorf("%w %#08x: kind %d", ErrInvalid, w, r.Kind)
	}
	return r, nil
}

// Device is the exit device. It is safe for concurrent use.
type Device struct {
	onReport   func(Report)
	onProgress func(Stage)
	done       chan struct{}
	progressed atomic.Uint64

	ignored  atomic.Uint64
	rejected atomic.Uint64

	mu     sync.Mutex
	report Report
	have   bool
}

var _ devices.Device = (*Device)(nil)

// New returns an exit device. onReport, if not nil, is called once with
// the first valid report.
func New(onReport func(Report)) *Device {
	return &Device{onReport: onReport, done: make(chan struct{})}
}

// SetOnProgress sets the function called with each progress write's Stage
// (on the writing vCPU's goroutine, no lock held; it must not block). Call
// it before the guest runs.
func (d *Device) SetOnProgress(f func(Stage)) { d.onProgress = f }

// Read implements devices.Device: the magic, version and state image.
func (d *Device) Read(offset uint64, data []byte) {
	var img [Size]byte
	binary.LittleEndian.PutUint32(img[0:], Magic)
	binary.LittleEndian.PutUint16(img[4:], Version)
	d.mu.Lock()
	if d.have {
		img[6] = 1
	}
	d.mu.Unlock()
	if offset >= Size {
		return
	}
	copy(data, img[offset:])
}

// Write implements devices.Device: a 32-bit write at offset 0 is a status
// word, an 8-bit write at ProgressOffset a progress Stage; every other
// write is rejected.
func (d *Device) Write(offset uint64, data []byte) {
	if offset == ProgressOffset && len(data) == 1 {
		d.progress(Stage(data[0]))
		return
	}
	if offset != 0 || len(data) != 4 {
		d.rejected.Add(1)
		return
	}
	r, err := Decode(binary.LittleEndian.Uint32(data))
	if err != nil {
		d.rejected.Add(1)
		return
	}
	d.mu.Lock()
	if d.have {
		d.mu.Unlock()
		d.ignored.Add(1)
		return
	}
	d.report, d.have = r, true
	close(d.done)
	d.mu.Unlock()
	if d.onReport != nil {
		d.onReport(r)
	}
}

func (d *Device) progress(s Stage) {
	d.mu.Lock()
	have := d.have
	d.mu.Unlock()
	if have || s < StageEarly || s > StageWait {
		d.rejected.Add(1)
		return
	}
	d.progressed.Add(1)
	if d.onProgress != nil {
		d.onProgress(s)
	}
}

// Progressed counts the progress writes accepted.
func (d *Device) Progressed() uint64 { return d.progressed.Load() }

// Done returns a channel closed when the first report has been recorded.
func (d *Device) Done() <-chan struct{} { return d.done }

// Report returns the first report, and false if none came yet.
func (d *Device) Report() (Report, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.report, d.have
}

// Ignored counts valid reports written after the first (not recorded).
func (d *Device) Ignored() uint64 { return d.ignored.Load() }

// Rejected counts writes that were not a valid status word: wrong width or
// offset, or a malformed word.
func (d *Device) Rejected() uint64 { return d.rejected.Load() }
