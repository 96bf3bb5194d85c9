package serial

// This file plays the register sequences of Linux's 8250 driver
// (drivers/tty/serial/8250/8250_port.c) against the UART: port type
// detection, the startup THRE/TXEN checks and interrupt-driven I/O.

import (
	"bytes"
	"testing"
)

// linux8250Autoconfig plays drivers/tty/serial/8250/8250_port.c autoconfig()
// and autoconfig_16550a() (with CONFIG_SERIAL_8250_16550A_VARIANTS) against
// the UART and returns the port type Linux would pick.
func linux8250Autoconfig(t *testing.T, u *UART) string {
	t.Helper()
	// IER test.
	scratch := in(u, regIER)
	out(u, regIER, 0)
	scratch2 := in(u, regIER) & 0x0f
	out(u, regIER, 0x0f)
	scratch3 := in(u, regIER) & 0x0f
	out(u, regIER, scratch)
	if scratch2 != 0 || scratch3 != 0x0f {
		return "IER test failed"
	}
	saveMCR := in(u, regMCR)
	saveLCR := in(u, regLCR)
	// Loopback test.
	out(u, regMCR, 0x10|0x08|0x02)
	status1 := in(u, regMSR) & 0xf0
	out(u, regMCR, saveMCR)
	if status1 != 0x90 {
		return "LOOP test failed"
	}
	out(u, regLCR, 0xbf)
	out(u, 2, 0) // EFR
	out(u, regLCR, 0)
	out(u, regIIR, 0x01)
	typ := ""
	switch in(u, regIIR) & 0xc0 {
	case 0x00:
		typ = "8250/16450"
	case 0x40:
		typ = "16550"
	case 0x80:
		typ = "unknown"
	case 0xc0:
		typ = autoconfig16550a(u)
	}
	out(u, regLCR, saveLCR)
	out(u, regMCR, saveMCR)
	clearFIFOs(u)
	in(u, regData)
	out(u, regIER, 0)
	return typ
}

func autoconfig16550a(u *UART) string {
	out(u, regLCR, 0x80)
	if in(u, 2) == 0 {
		return "EFRv1 (16650 family)"
	}
	out(u, regLCR, 0xbf)
	if in(u, 2) == 0 {
		return "EFRv2 (16650V2 family)"
	}
	out(u, regLCR, 0)
	status1 := in(u, regMCR)
	out(u, regLCR, 0xe0)
	status2 := in(u, 2)
	if (status2^status1)&0x10 == 0 {
		out(u, regLCR, 0)
		out(u, regMCR, status1^0x10)
		out(u, regLCR, 0xe0)
		status2 = in(u, 2)
		out(u, regLCR, 0)
		out(u, regMCR, status1)
		if (status2^status1)&0x10 != 0 {
			return "NS16550A"
		}
	}
	out(u, regLCR, 0)
	out(u, regIIR, 0x21)
	s1 := in(u, regIIR) & 0xe0
	out(u, regIIR, 0x01)
	out(u, regLCR, 0x80)
	out(u, regIIR, 0x21)
	s2 := in(u, regIIR) & 0xe0
	out(u, regIIR, 0x01)
	out(u, regLCR, 0)
	if s1 == 0xc0 && s2 == 0xe0 {
		return "16750"
	}
	iersave := in(u, regIER)
	out(u, regIER, iersave&^0x40)
	if in(u, regIER)&0x40 == 0 {
		out(u, regIER, iersave|0x40)
		if in(u, regIER)&0x40 != 0 {
			return "XScale"
		}
	}
	out(u, regIER, iersave)
	if sizeFIFO(u) == 64 {
		return "U6_16550A"
	}
	return "16550A"
}

// sizeFIFO plays size_fifo(): loop back 256 bytes and count what arrives.
func sizeFIFO(u *UART) int {
	oldLCR := in(u, regLCR)
	out(u, regLCR, 0)
	oldFCR := in(u, regIIR)
	oldMCR := in(u, regMCR)
	out(u, regIIR, 0x07)
	out(u, regMCR, 0x10)
	out(u, regLCR, 0x80)
	oldDLL, oldDLM := in(u, 0), in(u, 1)
	out(u, 0, 1)
	out(u, 1, 0)
	out(u, regLCR, 0x03)
	for i := 0; i < 256; i++ {
		out(u, regData, byte(i))
	}
	count := 0
	for ; in(u, regLSR)&0x01 != 0 && count < 256; count++ {
		in(u, regData)
	}
	out(u, regIIR, oldFCR)
	out(u, regMCR, oldMCR)
	out(u, regLCR, 0x80)
	out(u, 0, oldDLL)
	out(u, 1, oldDLM)
	out(u, regLCR, oldLCR)
	return count
}

func clearFIFOs(u *UART) {
	out(u, regIIR, 0x01)
	out(u, regIIR, 0x07)
	out(u, regIIR, 0x00)
}

// linux8250Startup plays serial8250_do_startup() for a port with an IRQ and
// reports the THRE and TXEN bug checks.
func linux8250Startup(u *UART) (bugTHRE, bugTXEN bool) {
	clearFIFOs(u)
	in(u, regLSR)
	in(u, regData)
	in(u, regIIR)
	in(u, regMSR)
	if in(u, regLSR) == 0xff {
		panic("LSR safety check")
	}
	// THRE re-assert test (after request_irq).
	for in(u, regLSR)&0x20 == 0 {
	}
	out(u, regIER, 0x02)
	iir1 := in(u, regIIR)
	out(u, regIER, 0)
	out(u, regIER, 0x02)
	iir := in(u, regIIR)
	out(u, regIER, 0)
	bugTHRE = iir1&0x01 == 0 && iir&0x01 != 0
	out(u, regLCR, 0x03)
	out(u, regMCR, 0x08|0x02|0x01) // OUT2|RTS|DTR
	// TXEN test.
	out(u, regIER, 0x02)
	lsr := in(u, regLSR)
	iir = in(u, regIIR)
	out(u, regIER, 0)
	bugTXEN = lsr&0x40 != 0 && iir&0x01 != 0
	in(u, regLSR)
	in(u, regData)
	in(u, regIIR)
	in(u, regMSR)
	return bugTHRE, bugTXEN
}

// linuxSetTermios plays the register writes of serial8250_do_set_termios()
// for 115200 8N1 on a 16550A.
func linuxSetTermios(u *UART, ier byte) {
	out(u, regIER, ier)
	out(u, regLCR, 0x83)
	out(u, 0, 1)
	out(u, 1, 0)
	out(u, regLCR, 0x03)
	out(u, regIIR, 0x01)
	out(u, regIIR, 0x81)
	out(u, regMCR, 0x08|0x02|0x01)
}

// linuxISR plays serial8250_interrupt()/serial8250_handle_irq(): it loops
// while IIR reports an interrupt, reading RX and refilling TX 16 bytes at a
// time from *txq, and clears IER.THRI when *txq runs dry.
func linuxISR(u *UART, ier *byte, txq *[]byte, rx *[]byte) (handled bool) {
	for pass := 0; pass < 512; pass++ {
		iir := in(u, regIIR)
		if iir&0x01 != 0 {
			return handled
		}
		handled = true
		lsr := in(u, regLSR)
		for n := 0; lsr&0x01 != 0 && n < 256; n++ {
			*rx = append(*rx, in(u, regData))
			lsr = in(u, regLSR)
		}
		in(u, regMSR)
		if lsr&0x20 != 0 && *ier&0x02 != 0 {
			n := min(16, len(*txq))
			for _, c := range (*txq)[:n] {
				out(u, regData, c)
			}
			*txq = (*txq)[n:]
			if len(*txq) == 0 {
				*ier &^= 0x02
				out(u, regIER, *ier)
			}
		}
	}
	panic("interrupt storm")
}

func TestLinuxDetects16550A(t *testing.T) {
	u, irq, buf := newTestUART()
	if typ := linux8250Autoconfig(t, u); typ != "16550A" {
		t.Fatalf("Linux would detect %q, want 16550A", typ)
	}
	if n := sizeFIFO(u); n != FIFOSize {
		t.Fatalf("size_fifo = %d", n)
	}
	bugTHRE, bugTXEN := linux8250Startup(u)
	if bugTHRE || bugTXEN {
		t.Fatalf("startup flags UART_BUG_THRE=%v UART_BUG_TXEN=%v; want interrupt-driven TX", bugTHRE, bugTXEN)
	}
	if buf.String() != "" {
		t.Fatalf("probe leaked %q to the output", buf.String())
	}
	if level, _, redundant := irq.snapshot(); level || redundant != 0 {
		t.Fatalf("after probe: level %v, %d redundant SetLevel calls", level, redundant)
	}
}

func TestLinuxInterruptDrivenIO(t *testing.T) {
	u, irq, buf := newTestUART()
	linux8250Autoconfig(t, u)
	linux8250Startup(u)
	ier := byte(0x05) // RLSI|RDI
	linuxSetTermios(u, ier)
	if level, _, _ := irq.snapshot(); level {
		t.Fatal("line high with nothing pending")
	}

	// uart_start_tx: set IER.THRI; the guest now waits for the interrupt.
	msg := bytes.Repeat([]byte("0123456789abcdef-"), 5)
	txq := append([]byte(nil), msg...)
	_, rises0, _ := irq.snapshot()
	ier |= 0x02
	out(u, regIER, ier)
	var rx []byte
	for round := 0; len(txq) > 0 || ier&0x02 != 0; round++ {
		level, rises, _ := irq.snapshot()
		if !level || rises == rises0 {
			t.Fatalf("round %d: no interrupt edge while TX pending (level %v)", round, level)
		}
		rises0 = rises
		if !linuxISR(u, &ier, &txq, &rx) {
			t.Fatalf("round %d: spurious interrupt", round)
		}
		if level, _, _ := irq.snapshot(); level {
			t.Fatalf("round %d: line still high after the ISR", round)
		}
		if round > 20 {
			t.Fatal("TX did not finish")
		}
	}
	if buf.String() != string(msg) {
		t.Fatalf("output %q", buf.String())
	}

	// RX: host input raises the line; the ISR drains it and the line drops.
	_, rises0, _ = irq.snapshot()
	if n := u.Enqueue([]byte("hi!")); n != 3 {
		t.Fatalf("Enqueue took %d", n)
	}
	if level, rises, _ := irq.snapshot(); !level || rises != rises0+1 {
		t.Fatal("no RX interrupt")
	}
	if iir := in(u, regIIR); iir != 0xcc {
		t.Fatalf("IIR = %#x, want character timeout 0xcc below the trigger level", iir)
	}
	linuxISR(u, &ier, &txq, &rx)
	if string(rx) != "hi!" {
		t.Fatalf("rx %q", rx)
	}
	if level, _, redundant := irq.snapshot(); level || redundant != 0 {
		t.Fatalf("level %v redundant %d", level, redundant)
	}

	// Console write path: IER saved, zeroed, bytes polled out, IER restored.
	// Restoring THRI must raise the THRE interrupt again.
	ier |= 0x02
	out(u, regIER, ier)
	linuxISR(u, &ier, &txq, &rx) // nothing queued: clears THRI
	ier |= 0x02
	out(u, regIER, ier)
	saved := in(u, regIER)
	out(u, regIER, 0)
	for _, c := range []byte("printk\n") {
		for in(u, regLSR)&0x20 == 0 {
		}
		out(u, regData, c)
	}
	_, rises0, _ = irq.snapshot()
	out(u, regIER, saved)
	if level, rises, _ := irq.snapshot(); !level || rises != rises0+1 {
		t.Fatal("restoring IER.THRI did not re-raise the THRE interrupt")
	}
}

// TestLinuxAutoconfigIRQ plays autoconfig_irq() (CONFIG_SERIAL_8250_DETECT_IRQ):
// Linux finds the port's IRQ by watching for an interrupt after enabling
// every source and writing THR.
func TestLinuxAutoconfigIRQ(t *testing.T) {
	u, irq, buf := newTestUART()
	saveMCR := in(u, regMCR)
	saveIER := in(u, regIER)
	out(u, regMCR, mcrOUT1|mcrOUT2)
	_, rises0, _ := irq.snapshot() // probe_irq_on
	out(u, regMCR, 0)
	out(u, regMCR, mcrDTR|mcrRTS|mcrOUT2)
	out(u, regIER, 0x0f)
	in(u, regLSR)
	in(u, regData)
	in(u, regIIR)
	in(u, regMSR)
	out(u, regData, 0xff)
	level, rises, _ := irq.snapshot() // probe_irq_off
	if !level || rises == rises0 {
		t.Fatal("no interrupt seen: Linux would find no IRQ")
	}
	out(u, regMCR, saveMCR)
	out(u, regIER, saveIER)
	if level, _, _ := irq.snapshot(); level {
		t.Fatal("line left high")
	}
	// The probe byte really is transmitted, as on hardware.
	if buf.String() != "\xff" {
		t.Fatalf("output %q", buf.String())
	}
}
