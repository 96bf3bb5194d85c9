package i8042

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

type fakeIRQ struct {
	mu        sync.Mutex
	level     bool
	rises     int
	redundant int
}

func (f *fakeIRQ) SetLevel(high bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if high == f.level {
		f.redundant++
	}
	if high && !f.level {
		f.rises++
	}
	f.level = high
	return nil
}

func (f *fakeIRQ) get() (bool, int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.level, f.rises, f.redundant
}

type rig struct {
	c        *Controller
	kbd, aux *fakeIRQ
	resets   atomic.Int32
}

func newRig() *rig {
	r := &rig{kbd: &fakeIRQ{}, aux: &fakeIRQ{}}
	r.c = New(Config{OnReset: func() { r.resets.Add(1) }, KeyboardIRQ: r.kbd, AuxIRQ: r.aux})
	return r
}

func (r *rig) inb(port int) byte {
	var b [1]byte
	if port == DataPort {
		r.c.DataPort().Read(0, b[:])
	} else {
		r.c.CommandPort().Read(0, b[:])
	}
	return b[0]
}

func (r *rig) outb(port int, v byte) {
	if port == DataPort {
		r.c.DataPort().Write(0, []byte{v})
	} else {
		r.c.CommandPort().Write(0, []byte{v})
	}
}

// Command encodings from Linux's drivers/input/serio/i8042.h: bits 12-15
// count parameter bytes sent, bits 8-11 bytes received.
const (
	cmdCtlRCTR    = 0x0120
	cmdCtlWCTR    = 0x1060
	cmdCtlTest    = 0x01aa
	cmdKbdDisable = 0x00ad
	cmdKbdEnable  = 0x00ae
	cmdKbdTest    = 0x01ab
	cmdAuxDisable = 0x00a7
	cmdAuxEnable  = 0x00a8
	cmdAuxTest    = 0x01a9
	cmdAuxSend    = 0x10d4
	cmdAuxLoop    = 0x11d3
)

var errTimeout = errors.New("i8042 timeout")

// command plays Linux's __i8042_command() with its polling loops cut short:
// the emulated controller never keeps IBF set and answers synchronously.
func (r *rig) command(param []byte, command int) error {
	if r.inb(CommandPort)&0x02 != 0 {
		return errTimeout
	}
	r.outb(CommandPort, byte(command))
	for i := 0; i < (command>>12)&0xf; i++ {
		if r.inb(CommandPort)&0x02 != 0 {
			return errTimeout
		}
		r.outb(DataPort, param[i])
	}
	for i := 0; i < (command>>8)&0xf; i++ {
		s := r.inb(CommandPort)
		if s&statusOBF == 0 {
			return errTimeout
		}
		if command == cmdAuxLoop && s&statusAuxData == 0 {
			return errors.New("auxerr")
		}
		param[i] = r.inb(DataPort)
	}
	return nil
}

// flush plays i8042_flush().
func (r *rig) flush() error {
	for n := 0; r.inb(CommandPort)&statusOBF != 0; n++ {
		if n >= 16 {
			return errors.New("flush: buffer never empties")
		}
		r.inb(DataPort)
	}
	return nil
}

func TestLinuxProbe(t *testing.T) {
	r := newRig()
	param := make([]byte, 1)

	// i8042_controller_check.
	if err := r.flush(); err != nil {
		t.Fatal(err)
	}
	// i8042_controller_selftest.
	if err := r.command(param, cmdCtlTest); err != nil || param[0] != 0x55 {
		t.Fatalf("self test: %v %#x", err, param[0])
	}
	// i8042_controller_init: two equal CTR reads, no key lock.
	ctr := make([]byte, 2)
	if err := r.command(ctr[0:1], cmdCtlRCTR); err != nil {
		t.Fatal(err)
	}
	if err := r.command(ctr[1:2], cmdCtlRCTR); err != nil || ctr[0] != ctr[1] {
		t.Fatalf("unstable CTR %x %v", ctr, err)
	}
	if r.inb(CommandPort)&statusUnlock == 0 {
		t.Fatal("Linux would warn: Keylock active")
	}
	cur := ctr[0]&^ctrKbdInt | ctrKbdDis
	if err := r.command([]byte{cur}, cmdCtlWCTR); err != nil {
		t.Fatal(err)
	}
	if err := r.command(param, cmdCtlRCTR); err != nil || param[0] != cur {
		t.Fatalf("CTR write-back: %#x want %#x (%v)", param[0], cur, err)
	}
	if err := r.flush(); err != nil {
		t.Fatal(err)
	}

	// i8042_check_aux: loopback, bit-assignment test, IRQ delivery.
	param[0] = 0x5a
	if err := r.command(param, cmdAuxLoop); err != nil || param[0] != 0x5a {
		t.Fatalf("aux loop: %v %#x", err, param[0])
	}
	toggle := func(cmd int, wantDis bool) {
		t.Helper()
		if err := r.command(param, cmd); err != nil {
			t.Fatal(err)
		}
		if err := r.command(param, cmdCtlRCTR); err != nil || (param[0]&ctrAuxDis != 0) != wantDis {
			t.Fatalf("aux toggle %#x: CTR %#x", cmd, param[0])
		}
	}
	toggle(cmdAuxDisable, true)
	toggle(cmdAuxEnable, false)
	if err := r.command(param, cmdCtlRCTR); err != nil {
		t.Fatal(err)
	}
	cur = param[0]&^ctrAuxDis | ctrAuxInt
	if err := r.command([]byte{cur}, cmdCtlWCTR); err != nil {
		t.Fatal(err)
	}
	_, rises, _ := r.aux.get()
	if err := r.command([]byte{0xa5}, cmdAuxLoop&0xf0ff); err != nil {
		t.Fatal(err)
	}
	if level, n, _ := r.aux.get(); !level || n != rises+1 {
		t.Fatal("AUX IRQ not delivered: Linux would wait 250 ms and drop the aux port")
	}
	// i8042_aux_test_irq.
	if s := r.inb(CommandPort); s&(statusOBF|statusAuxData) != statusOBF|statusAuxData || r.inb(DataPort) != 0xa5 {
		t.Fatal("aux test irq: wrong data")
	}
	if level, _, _ := r.aux.get(); level {
		t.Fatal("IRQ 12 still high after the read")
	}
	cur &^= ctrAuxInt
	cur |= ctrAuxDis
	if err := r.command([]byte{cur}, cmdCtlWCTR); err != nil {
		t.Fatal(err)
	}

	// i8042_check_mux: the third loop byte comes back unchanged, so no MUX.
	for _, b := range []byte{0xf0, 0x56} {
		param[0] = b
		if err := r.command(param, cmdAuxLoop); err != nil || param[0] != b {
			t.Fatalf("mux loop %#x: %v %#x", b, err, param[0])
		}
	}
	param[0] = 0xa4
	if err := r.command(param, cmdAuxLoop); err != nil || param[0] != 0xa4 {
		t.Fatal("third mux byte should echo (not a MUX controller)")
	}

	// Keyboard port enabled; atkbd sends GETID (0xf2) to the keyboard.
	cur = cur&^ctrKbdDis | ctrKbdInt
	if err := r.command([]byte{cur}, cmdCtlWCTR); err != nil {
		t.Fatal(err)
	}
	_, rises, _ = r.kbd.get()
	r.outb(DataPort, 0xf2)
	if level, n, _ := r.kbd.get(); !level || n != rises+1 {
		t.Fatal("no IRQ 1 for the keyboard's answer")
	}
	if s := r.inb(CommandPort); s&(statusOBF|statusTimeout|statusAuxData) != statusOBF|statusTimeout {
		t.Fatalf("status %#x: want OBF|timeout from the keyboard port", s)
	}
	if v := r.inb(DataPort); v != 0xfe {
		t.Fatalf("keyboard answer %#x, want 0xfe", v)
	}
	// psmouse writes through 0xd4.
	cur |= ctrAuxInt
	cur &^= ctrAuxDis
	if err := r.command([]byte{cur}, cmdCtlWCTR); err != nil {
		t.Fatal(err)
	}
	if err := r.command([]byte{0xff}, cmdAuxSend); err != nil {
		t.Fatal(err)
	}
	if s := r.inb(CommandPort); s&(statusOBF|statusTimeout|statusAuxData) != statusOBF|statusTimeout|statusAuxData {
		t.Fatalf("status %#x after aux send", s)
	}
	if level, _, _ := r.aux.get(); !level {
		t.Fatal("no IRQ 12 for the mouse's answer")
	}
	r.inb(DataPort)
	for _, f := range []*fakeIRQ{r.kbd, r.aux} {
		if level, _, redundant := f.get(); level || redundant != 0 {
			t.Fatalf("line level %v, redundant %d", level, redundant)
		}
	}
	if r.resets.Load() != 0 {
		t.Fatal("probe reset the machine")
	}
}

func TestCommands(t *testing.T) {
	tests := []struct {
		name  string
		cmd   int
		param []byte
		want  byte
	}{
		{"self test", cmdCtlTest, nil, 0x55},
		{"keyboard interface test", cmdKbdTest, nil, 0x00},
		{"aux interface test", cmdAuxTest, nil, 0x00},
		{"password", 0x01a4, nil, 0xf1},
		{"input port", 0x01c0, nil, 0x80},
		{"output port", 0x01d0, nil, 0x03},
		{"test inputs", 0x01e0, nil, 0x00},
		{"keyboard loop", 0x11d2, []byte{0x42}, 0x42},
		{"RAM byte 5", 0x0125, nil, 0x00},
	}
	for _, tc := range tests {
		r := newRig()
		p := make([]byte, 1)
		if tc.param != nil {
			copy(p, tc.param)
		}
		if err := r.command(p, tc.cmd); err != nil || p[0] != tc.want {
			t.Errorf("%s: got %#x, %v; want %#x", tc.name, p[0], err, tc.want)
		}
	}
}

func TestControllerRAM(t *testing.T) {
	r := newRig()
	r.outb(CommandPort, 0x65)
	r.outb(DataPort, 0x99)
	r.outb(CommandPort, 0x25)
	if v := r.inb(DataPort); v != 0x99 {
		t.Fatalf("RAM[5] = %#x", v)
	}
	if s := r.inb(CommandPort); s&statusCommand == 0 {
		t.Fatal("status lost the command/data flag")
	}
	// Disable/enable keyboard show in the command byte.
	r.outb(CommandPort, 0xad)
	r.outb(CommandPort, 0x20)
	if v := r.inb(DataPort); v&ctrKbdDis == 0 {
		t.Fatalf("CTR %#x after 0xad", v)
	}
	r.outb(CommandPort, 0xae)
	r.outb(CommandPort, 0x20)
	if v := r.inb(DataPort); v&ctrKbdDis != 0 {
		t.Fatalf("CTR %#x after 0xae", v)
	}
	// The system flag follows the command byte.
	r.outb(CommandPort, 0x60)
	r.outb(DataPort, 0x00)
	if s := r.inb(CommandPort); s&statusSys != 0 {
		t.Fatal("SYS flag still set")
	}
}

func TestReset(t *testing.T) {
	tests := []struct {
		name  string
		steps []struct {
			port int
			v    byte
		}
		resets int32
	}{
		{"pulse reset 0xfe", []struct {
			port int
			v    byte
		}{{CommandPort, 0xfe}}, 1},
		{"pulse all lines 0xf0", []struct {
			port int
			v    byte
		}{{CommandPort, 0xf0}}, 1},
		{"pulse nothing 0xff", []struct {
			port int
			v    byte
		}{{CommandPort, 0xff}}, 0},
		{"pulse line 1 only 0xfd", []struct {
			port int
			v    byte
		}{{CommandPort, 0xfd}}, 0},
		{"output port bit 0 low", []struct {
			port int
			v    byte
		}{{CommandPort, 0xd1}, {DataPort, 0xfe}}, 1},
		{"output port A20 only", []struct {
			port int
			v    byte
		}{{CommandPort, 0xd1}, {DataPort, 0xdf}}, 0},
		{"a data byte alone never resets", []struct {
			port int
			v    byte
		}{{DataPort, 0xfe}}, 0},
	}
	for _, tc := range tests {
		r := newRig()
		for _, s := range tc.steps {
			r.outb(s.port, s.v)
		}
		if got := r.resets.Load(); got != tc.resets {
			t.Errorf("%s: %d resets, want %d", tc.name, got, tc.resets)
		}
	}
	// Linux's reboot loop: kb_wait then 0xfe, ten times.
	r := newRig()
	for i := 0; i < 10; i++ {
		if r.inb(CommandPort)&0x02 != 0 {
			t.Fatal("IBF set: kb_wait would spin")
		}
		r.outb(CommandPort, 0xfe)
	}
	if r.resets.Load() != 10 {
		t.Fatal("reset not requested each time")
	}
	// No callback configured: nothing happens.
	New(Config{}).CommandPort().Write(0, []byte{0xfe})
}

func TestOutputBufferBoundedAndEdges(t *testing.T) {
	r := newRig()
	for i := 0; i < 40; i++ {
		r.outb(CommandPort, 0xd2)
		r.outb(DataPort, byte(i))
	}
	n := 0
	for ; r.inb(CommandPort)&statusOBF != 0; n++ {
		if v := r.inb(DataPort); v != byte(n) {
			t.Fatalf("byte %d = %d", n, v)
		}
	}
	if n != queueSize {
		t.Fatalf("buffered %d bytes, want %d", n, queueSize)
	}
	// Reading an empty buffer repeats the last byte.
	if v := r.inb(DataPort); v != queueSize-1 {
		t.Fatalf("empty read %d", v)
	}
	// Every byte is its own IRQ 1 edge.
	_, rises, _ := r.kbd.get()
	for i := 0; i < 3; i++ {
		r.outb(CommandPort, 0xd2)
		r.outb(DataPort, byte(i))
	}
	for i := 0; i < 3; i++ {
		r.inb(DataPort)
	}
	if level, n, redundant := r.kbd.get(); level || n != rises+3 || redundant != 0 {
		t.Fatalf("level %v rises %d (want %d) redundant %d", level, n, rises+3, redundant)
	}
	// Interrupts masked in the command byte: no edges.
	r.outb(CommandPort, 0x60)
	r.outb(DataPort, 0)
	r.outb(CommandPort, 0xd2)
	r.outb(DataPort, 1)
	if level, _, _ := r.kbd.get(); level {
		t.Fatal("IRQ 1 with KBDINT clear")
	}
	// Enabling it with a byte waiting raises the line.
	r.outb(CommandPort, 0x60)
	r.outb(DataPort, ctrKbdInt)
	if level, _, _ := r.kbd.get(); !level {
		t.Fatal("IRQ 1 not raised when enabled with data waiting")
	}
}

func TestOutputPortShowsBufferLines(t *testing.T) {
	r := newRig()
	r.outb(CommandPort, 0xd3)
	r.outb(DataPort, 0x11)
	r.outb(CommandPort, 0xd0) // queued behind the aux byte
	if r.inb(DataPort) != 0x11 {
		t.Fatal("aux byte lost")
	}
	if v := r.inb(DataPort); v != 0x23 {
		t.Fatalf("output port %#x, want 0x23 (aux byte was waiting)", v)
	}
}

func TestConcurrent(t *testing.T) {
	r := newRig()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				switch (i + g) % 4 {
				case 0:
					r.outb(CommandPort, 0x20)
				case 1:
					r.inb(CommandPort)
				case 2:
					r.inb(DataPort)
				case 3:
					r.outb(DataPort, byte(i))
				}
			}
		}(g)
	}
	wg.Wait()
	for _, f := range []*fakeIRQ{r.kbd, r.aux} {
		if _, _, redundant := f.get(); redundant != 0 {
			t.Fatalf("%d redundant SetLevel calls", redundant)
		}
	}
}
