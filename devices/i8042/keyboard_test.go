package i8042

import (
	"bytes"
	"errors"
	"testing"
)

// keyboardRig is a rig with the keyboard attached.
func keyboardRig() *rig {
	r := newRig()
	r.c = New(Config{OnReset: func() { r.resets.Add(1) }, KeyboardIRQ: r.kbd, AuxIRQ: r.aux, Keyboard: true})
	return r
}

// drain reads the output buffer while it is full.
func (r *rig) drain() []byte {
	var out []byte
	for r.inb(CommandPort)&statusOBF != 0 {
		out = append(out, r.inb(DataPort))
	}
	return out
}

// TestKeyboardProbe follows Linux's atkbd: GETID, set LEDs, typematic rate,
// enable, on a translating controller (the default command byte).
func TestKeyboardProbe(t *testing.T) {
	r := keyboardRig()
	for _, tc := range []struct {
		send []byte
		want []byte
	}{
		{[]byte{0xf2}, []byte{0xfa, 0xab, 0x41}},
		{[]byte{0xed, 0x00}, []byte{0xfa, 0xfa}},
		{[]byte{0xf3, 0x20}, []byte{0xfa, 0xfa}},
		{[]byte{0xf0, 0x00}, []byte{0xfa, 0xfa, 0x41}},
		{[]byte{0xf4}, []byte{0xfa}},
		{[]byte{0xff}, []byte{0xfa, 0xaa}},
		{[]byte{0xee}, []byte{0xee}},
	} {
		var got []byte
		for _, b := range tc.send {
			r.outb(DataPort, b)
			if s := r.inb(CommandPort); s&statusTimeout != 0 {
				t.Fatalf("%x: time-out status %#x", tc.send, s)
			}
			got = append(got, r.drain()...)
		}
		if !bytes.Equal(got, tc.want) {
			t.Fatalf("sent %x: got %x, want %x", tc.send, got, tc.want)
		}
	}
	// Without translation the id and the set come untranslated.
	r.outb(CommandPort, 0x60)
	r.outb(DataPort, ctrKbdInt|ctrSys)
	r.outb(DataPort, 0xf2)
	if got := r.drain(); !bytes.Equal(got, []byte{0xfa, 0xab, 0x83}) {
		t.Fatalf("untranslated GETID %x", got)
	}
}

func TestPressCtrlAltDel(t *testing.T) {
	if err := newRig().c.PressCtrlAltDel(); !errors.Is(err, ErrNoKeyboard) {
		t.Fatalf("without a keyboard: %v", err)
	}
	r := keyboardRig()
	_, rises, _ := r.kbd.get()
	if err := r.c.PressCtrlAltDel(); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for r.inb(CommandPort)&statusOBF != 0 {
		level, n, _ := r.kbd.get()
		if !level || n != rises+1 {
			t.Fatalf("byte %d: IRQ 1 level %v after %d rises, want a new edge", len(got), level, n-rises)
		}
		rises = n
		got = append(got, r.inb(DataPort))
	}
	if !bytes.Equal(got, ctrlAltDelSet1) {
		t.Fatalf("scan codes %x, want %x", got, ctrlAltDelSet1)
	}
	// Set 2 without translation; a full buffer refuses instead of cutting
	// the sequence.
	r.outb(CommandPort, 0x60)
	r.outb(DataPort, ctrKbdInt|ctrSys)
	if err := r.c.PressCtrlAltDel(); err != nil {
		t.Fatal(err)
	}
	if err := r.c.PressCtrlAltDel(); !errors.Is(err, ErrBufferFull) {
		t.Fatalf("second press with %d bytes queued: %v", len(ctrlAltDelSet2), err)
	}
	if got := r.drain(); !bytes.Equal(got, ctrlAltDelSet2) {
		t.Fatalf("set 2 scan codes %x", got)
	}
}

// FuzzKeyboard drives the controller with the keyboard attached: arbitrary
// port traffic mixed with Ctrl-Alt-Del presses never panics, never
// overfills the buffer, and a press either queues the whole sequence or
// nothing.
func FuzzKeyboard(f *testing.F) {
	f.Add([]byte{1, 0xf2, 0, 0, 0, 0, 1, 0xed, 1, 0x00, 2, 0, 0, 0})
	f.Add([]byte{2, 0, 2, 0, 2, 0, 3, 0x60, 1, 0x01, 2, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		r := keyboardRig()
		for i := 0; i+1 < len(ops); i += 2 {
			switch ops[i] & 3 {
			case 0:
				r.inb(DataPort)
			case 1:
				r.outb(DataPort, ops[i+1])
			case 2:
				r.c.mu.Lock()
				before := r.c.qLen
				r.c.mu.Unlock()
				err := r.c.PressCtrlAltDel()
				r.c.mu.Lock()
				after := r.c.qLen
				r.c.mu.Unlock()
				if (err == nil) != (after > before) || (err != nil && after != before) {
					t.Fatalf("press: %v, queue %d -> %d", err, before, after)
				}
			case 3:
				r.outb(CommandPort, ops[i+1])
			}
			r.c.mu.Lock()
			n := r.c.qLen
			r.c.mu.Unlock()
			if n < 0 || n > queueSize {
				t.Fatalf("queue length %d", n)
			}
		}
	})
}
