// Package serial emulates a 16550A UART, the PC's COM port, so that Linux's
// 8250 driver detects a "16550A" and drives it with interrupts in both
// directions (no UART_BUG_TXEN / UART_BUG_THRE polling fallbacks).
//
// The UART occupies eight consecutive I/O ports (COM1: 0x3f8-0x3ff, IRQ 4).
// Insert it on the PIO bus with Insert(uart, COM1Base, RegisterCount).
//
// # Model
//
// Transmission is instantaneous: a byte written to THR goes straight to the
// output io.Writer, so LSR always reports THRE and TEMT. The receive FIFO
// holds FIFOSize (16) bytes when FIFOs are enabled and one byte (the RBR)
// when they are not, exactly as on the real part; Linux's FIFO-size probe
// counts 16 bytes in loopback and keeps the port a plain 16550A.
// In FIFO mode the character-timeout interrupt is modelled as having
// expired at once: a FIFO holding fewer bytes than the trigger level
// reports IIR=0xCC, at or above it IIR=0xC4.
//
// Interrupt sources, highest priority first: receiver line status (overrun),
// received data available / character timeout, THR empty, modem status.
// The THR-empty interrupt is cleared by reading IIR while it is the reported
// source or by writing THR, and is raised again when the byte has been
// sent (at once) and whenever IER.THRI goes from 0 to 1 while THR is empty.
// Linux relies on that re-arm: it enables THRI to start transmitting, and its
// startup code checks for it.
//
// The interrupt output is gated by MCR.OUT2, as on PC serial cards (the bit,
// not the pin, so interrupts keep working in loopback mode as on most
// Super I/O parts). The UART computes its output level after every register
// access or input and calls IRQLine.SetLevel only when the level changes.
// ISA IRQ 4 is edge triggered at the PIC/IOAPIC, so the guest sees the
// low-to-high transitions. When the guest's handler refills THR, the line
// rises once after the first byte of the burst and falls at the handler's
// next IIR read; the interrupt controller latches that edge and may deliver
// one extra interrupt that finds nothing pending, which Linux's handler
// tolerates (a UART that transmits instantly cannot avoid it).
//
// Modem inputs read as a terminal that is always connected: CTS, DSR and DCD
// set, RI clear. In loopback mode (MCR bit 4) they follow RTS, DTR, OUT2 and
// OUT1, transmitted bytes go to the receive FIFO instead of the writer, and
// host input is refused (Enqueue returns 0) because the serial input pin is
// disconnected.
//
// # Host input
//
// Enqueue puts host bytes into the receive FIFO up to its free space and
// returns how many it took; Room delivers a signal whenever the guest frees
// space. Feed combines both and blocks until every byte has been accepted,
// so host input is back-pressured, never dropped. (A guest that clears its
// own FIFO through FCR discards what was in it, as the hardware does.)
//
// # Locking
//
// One mutex (mu) guards all register state. It is held while the UART calls
// IRQLine.SetLevel, which keeps the driven level in step with the state when
// vCPUs and the input goroutine race; therefore SetLevel must not call back
// into the UART, and should be quick (KVM_IRQ_LINE is). The output writer is
// called with mu released but under a second mutex (outMu) taken before mu is
// dropped, so bytes leave in the order the guest wrote them while Enqueue and
// other vCPUs' register accesses proceed. Lock order is mu, then outMu. A
// writer that blocks stalls the vCPU that wrote THR; a second vCPU writing
// THR meanwhile waits for outMu while holding mu, and then everything waits.
// A writer may call Enqueue, but must not wait for the guest to read input.
// Writes must not block the vCPU for long: if the output can stall (a
// terminal stopped with ^S, a full pipe), give New a buffered or
// asynchronous writer.
//
// The package imports only devices, never kvm.
package serial

import (
	"context"
	"io"
	"sync"

	"github.com/flintvm/flint/devices"
)

// Standard PC COM port locations.
const (
	// COM1Base is the first I/O port of COM1.
	COM1Base = 0x3f8
	// COM1IRQ is COM1's ISA interrupt.
	COM1IRQ = 4
	// COM2Base is the first I/O port of COM2.
	COM2Base = 0x2f8
	// COM2IRQ is COM2's ISA interrupt.
	COM2IRQ = 3
	// RegisterCount is the number of I/O ports a UART occupies; use it as the
	// size when inserting the UART on the PIO bus.
	RegisterCount = 8
	// FIFOSize is the depth of the receive FIFO in FIFO mode.
	FIFOSize = 16
)

// Register offsets from the base port.
const (
	regData = 0 // RBR (read) / THR (write); DLL when LCR.DLAB
	regIER  = 1 // IER; DLM when LCR.DLAB
	regIIR  = 2 // IIR (read) / FCR (write)
	regLCR  = 3
	regMCR  = 4
	regLSR  = 5
	regMSR  = 6
	regSCR  = 7
)

// IER bits.
const (
	ierRDI  = 0x01 // received data available (and character timeout)
	ierTHRI = 0x02 // THR empty
	ierRLSI = 0x04 // receiver line status
	ierMSI  = 0x08 // modem status
	ierMask = 0x0f // the upper four bits read as zero on a 16550A
)

// IIR values (bits 0-3) and the FIFO-enabled bits.
const (
	iirNoInt   = 0x01
	iirMSI     = 0x00
	iirTHRI    = 0x02
	iirRDI     = 0x04
	iirRLSI    = 0x06
	iirTimeout = 0x0c
	iirFIFOs   = 0xc0
)

// FCR bits.
const (
	fcrEnable   = 0x01
	fcrClearRX  = 0x02
	fcrClearTX  = 0x04
	fcrDMA      = 0x08
	fcrTrigMask = 0xc0
)

// LCR, MCR, LSR and MSR bits.
const (
	lcrDLAB = 0x80

	mcrDTR  = 0x01
	mcrRTS  = 0x02
	mcrOUT1 = 0x04
	mcrOUT2 = 0x08
	mcrLoop = 0x10
	mcrMask = 0x1f

	lsrDR   = 0x01
	lsrOE   = 0x02
	lsrPE   = 0x04
	lsrFE   = 0x08
	lsrBI   = 0x10
	lsrTHRE = 0x20
	lsrTEMT = 0x40
	lsrErrs = lsrOE | lsrPE | lsrFE | lsrBI

	msrDCTS = 0x01
	msrTERI = 0x04
	msrCTS  = 0x10
	msrDSR  = 0x20
	msrRI   = 0x40
	msrDCD  = 0x80
)

// triggerLevels maps FCR bits 6-7 to the receive trigger level.
var triggerLevels = [4]int{1, 4, 8, 14}

// Stats counts UART traffic; all counters only grow.
type Stats struct {
	// TXBytes is the number of bytes handed to the output writer.
	TXBytes uint64
	// RXBytes is the number of host bytes accepted by Enqueue.
	RXBytes uint64
	// Overruns counts loopback bytes lost to a full receive FIFO.
	Overruns uint64
	// WriteErrors counts bytes the output writer failed to take.
	WriteErrors uint64
}

// UART is an emulated 16550A. It implements devices.Device; offsets are
// relative to the base port. Create it with New.
type UART struct {
	mu   sync.Mutex
	irq  devices.IRQLine // may be nil
	line bool            // level last driven on irq

	ier, lcr, mcr, fcr, scr uint8
	dll, dlm                uint8
	lsrErr                  uint8 // sticky LSR error bits, cleared by reading LSR
	msrDelta                uint8 // MSR bits 0-3, cleared by reading MSR
	threPending             bool  // THR-empty interrupt condition

	rx     [FIFOSize]byte
	rxHead int
	rxLen  int
	rbr    byte // last byte read; what RBR shows when the FIFO is empty

	room chan struct{} // capacity 1: "the guest freed RX space"

	stats Stats

	feedMu sync.Mutex // serialises Feed callers

	outMu  sync.Mutex // serialises calls to out; taken while holding mu
	out    io.Writer
	outBuf [RegisterCount]byte // guarded by outMu
}

// New returns a UART in its power-on state (IIR=0x01, LSR=0x60, everything
// else zero; divisor 12, i.e. 9600 baud). Transmitted bytes go to out; a
// nil out discards them. irq is the UART's interrupt input (IRQ 4 for COM1);
// it may be nil for a polled-only port.
func New(out io.Writer, irq devices.IRQLine) *UART {
	if out == nil {
		out = io.Discard
	}
	return &UART{
		irq:  irq,
		out:  out,
		dll:  12,
		room: make(chan struct{}, 1),
	}
}

var _ devices.Device = (*UART)(nil)

// Read implements devices.Device. A multi-byte access reads consecutive
// registers, as an 8-bit ISA device sees it.
func (u *UART) Read(offset uint64, data []byte) {
	u.mu.Lock()
	for i := range data {
		if r := offset + uint64(i); r < RegisterCount {
			data[i] = u.readReg(uint8(r))
		}
	}
	u.updateIRQ()
	u.mu.Unlock()
}

// Write implements devices.Device. A multi-byte access writes consecutive
// registers.
func (u *UART) Write(offset uint64, data []byte) {
	var tx [RegisterCount]byte
	n := 0
	u.mu.Lock()
	for i, v := range data {
		if r := offset + uint64(i); r < RegisterCount {
			if u.writeReg(uint8(r), v) {
				tx[n] = v
				n++
			}
		}
	}
	u.updateIRQ()
	if n == 0 {
		u.mu.Unlock()
		return
	}
	u.stats.TXBytes += uint64(n)
	// Hand over to outMu before dropping mu so output keeps guest order.
	u.outMu.Lock()
	u.mu.Unlock()
	copy(u.outBuf[:], tx[:n])
	w, _ := u.out.Write(u.outBuf[:n])
	u.outMu.Unlock()
	if w < n {
		// The writer failed; the bytes are lost, the guest is not told.
		u.mu.Lock()
		u.stats.WriteErrors += uint64(n - max(w, 0))
		u.mu.Unlock()
	}
}

// readReg performs the read side effects of one register. Caller holds mu.
func (u *UART) readReg(r uint8) uint8 {
	dlab := u.lcr&lcrDLAB != 0
	switch r {
	case regData:
		if dlab {
			return u.dll
		}
		return u.popRX()
	case regIER:
		if dlab {
			return u.dlm
		}
		return u.ier
	case regIIR:
		id := u.interruptID()
		if id == iirTHRI {
			// Reading IIR while THRE is the reported source clears it.
			u.threPending = false
		}
		if u.fifoEnabled() {
			id |= iirFIFOs
		}
		return id
	case regLCR:
		return u.lcr
	case regMCR:
		return u.mcr
	case regLSR:
		v := u.lsrErr | lsrTHRE | lsrTEMT
		if u.rxLen > 0 {
			v |= lsrDR
		}
		u.lsrErr = 0
		return v
	case regMSR:
		v := u.modemInputs() | u.msrDelta
		u.msrDelta = 0
		return v
	default: // regSCR
		return u.scr
	}
}

// writeReg performs one register write. It reports whether v must be
// transmitted to the output writer. Caller holds mu.
func (u *UART) writeReg(r uint8, v uint8) (transmit bool) {
	dlab := u.lcr&lcrDLAB != 0
	switch r {
	case regData:
		if dlab {
			u.dll = v
			return false
		}
		return u.transmit(v)
	case regIER:
		if dlab {
			u.dlm = v
			return false
		}
		old := u.ier
		u.ier = v & ierMask
		switch {
		case u.ier&ierTHRI == 0:
			u.threPending = false
		case old&ierTHRI == 0:
			// Enabling THRI while THR is empty (it always is) raises the
			// THR-empty interrupt.
			u.threPending = true
		}
	case regIIR: // FCR
		u.writeFCR(v)
	case regLCR:
		u.lcr = v
	case regMCR:
		before := u.modemInputs()
		wasLoop := u.mcr&mcrLoop != 0
		u.mcr = v & mcrMask
		after := u.modemInputs()
		changed := before ^ after
		u.msrDelta |= (changed & (msrCTS | msrDSR | msrDCD)) >> 4
		if before&msrRI != 0 && after&msrRI == 0 {
			u.msrDelta |= msrTERI
		}
		if wasLoop && u.mcr&mcrLoop == 0 {
			u.signalRoom() // host input is accepted again
		}
	case regLSR, regMSR:
		// Factory-test writes on real parts; ignored.
	case regSCR:
		u.scr = v
	}
	return false
}

// writeFCR applies a FIFO control write. Caller holds mu.
func (u *UART) writeFCR(v uint8) {
	enable := v&fcrEnable != 0
	if enable != u.fifoEnabled() {
		// Switching between FIFO and character mode empties the FIFOs.
		u.clearRX()
	}
	if !enable {
		// The other FCR bits can only be programmed with bit 0 set.
		u.fcr = 0
		return
	}
	if v&fcrClearRX != 0 {
		u.clearRX()
	}
	// fcrClearTX: nothing is ever pending in the transmitter.
	u.fcr = v & (fcrEnable | fcrDMA | fcrTrigMask)
}

// transmit handles a THR write. Caller holds mu.
func (u *UART) transmit(v uint8) bool {
	// Writing THR clears the THRE interrupt; the byte leaves at once and THR
	// is empty again, which raises it anew.
	u.threPending = true
	if u.mcr&mcrLoop == 0 {
		return true
	}
	switch {
	case u.rxLen < u.rxCapacity():
		u.pushRX(v)
	case !u.fifoEnabled():
		// Character mode: the new byte overwrites the unread RBR.
		u.rx[u.rxHead] = v
		u.lsrErr |= lsrOE
		u.stats.Overruns++
	default:
		// FIFO mode: the FIFO is kept, the byte in the shift register lost.
		u.lsrErr |= lsrOE
		u.stats.Overruns++
	}
	return false
}

func (u *UART) fifoEnabled() bool { return u.fcr&fcrEnable != 0 }

func (u *UART) rxCapacity() int {
	if u.fifoEnabled() {
		return FIFOSize
	}
	return 1
}

func (u *UART) pushRX(v byte) {
	u.rx[(u.rxHead+u.rxLen)%FIFOSize] = v
	u.rxLen++
}

func (u *UART) popRX() byte {
	if u.rxLen == 0 {
		return u.rbr
	}
	u.rbr = u.rx[u.rxHead]
	u.rxHead = (u.rxHead + 1) % FIFOSize
	u.rxLen--
	u.signalRoom()
	return u.rbr
}

func (u *UART) clearRX() {
	if u.rxLen > 0 {
		u.signalRoom()
	}
	u.rxHead, u.rxLen = 0, 0
}

// signalRoom wakes a waiting input pump; it never blocks.
func (u *UART) signalRoom() {
	select {
	case u.room <- struct{}{}:
	default:
	}
}

// modemInputs returns MSR bits 4-7: the modem input lines.
func (u *UART) modemInputs() uint8 {
	if u.mcr&mcrLoop == 0 {
		return msrCTS | msrDSR | msrDCD
	}
	var v uint8
	if u.mcr&mcrRTS != 0 {
		v |= msrCTS
	}
	if u.mcr&mcrDTR != 0 {
		v |= msrDSR
	}
	if u.mcr&mcrOUT1 != 0 {
		v |= msrRI
	}
	if u.mcr&mcrOUT2 != 0 {
		v |= msrDCD
	}
	return v
}

// interruptID returns IIR bits 0-3 for the highest-priority pending and
// enabled interrupt, without side effects. Caller holds mu.
func (u *UART) interruptID() uint8 {
	if u.ier&ierRLSI != 0 && u.lsrErr&lsrErrs != 0 {
		return iirRLSI
	}
	if u.ier&ierRDI != 0 && u.rxLen > 0 {
		if u.fifoEnabled() && u.rxLen < triggerLevels[u.fcr>>6] {
			return iirTimeout
		}
		return iirRDI
	}
	if u.ier&ierTHRI != 0 && u.threPending {
		return iirTHRI
	}
	if u.ier&ierMSI != 0 && u.msrDelta != 0 {
		return iirMSI
	}
	return iirNoInt
}

// updateIRQ drives the interrupt line to the level the state implies, if it
// changed. Caller holds mu (see the package comment on locking).
func (u *UART) updateIRQ() {
	want := u.mcr&mcrOUT2 != 0 && u.interruptID() != iirNoInt
	if want == u.line || u.irq == nil {
		return
	}
	u.line = want
	// A failed KVM_IRQ_LINE cannot be retried meaningfully; the next state
	// change drives the line again.
	_ = u.irq.SetLevel(want)
}

// Enqueue copies host input into the receive FIFO, up to its free space
// (FIFOSize bytes in FIFO mode, one byte in character mode, none in
// loopback mode), and returns how many bytes it took. It never blocks.
// When it takes fewer than len(p), wait on Room before trying again.
func (u *UART) Enqueue(p []byte) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.mcr&mcrLoop != 0 {
		return 0
	}
	n := min(len(p), u.rxCapacity()-u.rxLen)
	for _, v := range p[:n] {
		u.pushRX(v)
	}
	if n > 0 {
		u.stats.RXBytes += uint64(n)
		u.updateIRQ()
	}
	return n
}

// Room returns a channel that receives a value after the guest frees space
// for input: it read a byte, cleared or reset the FIFO, or left loopback
// mode. Signals coalesce (the channel holds at most one), so a receiver must
// retry Enqueue and wait again if it still takes nothing. Meant for one
// input goroutine.
func (u *UART) Room() <-chan struct{} { return u.room }

// Feed delivers all of p to the guest, waiting for FIFO space as the guest
// reads. It returns the number of bytes accepted and ctx.Err() if ctx ends
// first. Concurrent Feed calls are serialised.
func (u *UART) Feed(ctx context.Context, p []byte) (int, error) {
	u.feedMu.Lock()
	defer u.feedMu.Unlock()
	done := 0
	for done < len(p) {
		n := u.Enqueue(p[done:])
		done += n
		if done == len(p) {
			break
		}
		if n > 0 {
			continue // the FIFO may have drained meanwhile; try once more
		}
		select {
		case <-u.room:
		case <-ctx.Done():
			return done, ctx.Err()
		}
	}
	return done, nil
}

// Stats returns a snapshot of the traffic counters.
func (u *UART) Stats() Stats {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.stats
}
