package vmm

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"
)

// gatedWriter takes nothing until open is closed, then collects.
type gatedWriter struct {
	open chan struct{}
	mu   sync.Mutex
	buf  bytes.Buffer
	err  error
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	<-g.open
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return 0, g.err
	}
	return g.buf.Write(p)
}

// TestSpoolDoesNotHoldTheGuest: while Flint's stdout takes nothing (its
// reader paused), the command's output up to the limit is taken at once,
// so the guest's console write completes instead of spinning; beyond the
// limit Write waits. Close delivers everything, in order.
func TestSpoolDoesNotHoldTheGuest(t *testing.T) {
	g := &gatedWriter{open: make(chan struct{})}
	sp := newSpool(g, 1000)
	var want bytes.Buffer
	wrote := make(chan struct{})
	go func() {
		for i := range 9 {
			p := bytes.Repeat([]byte{byte('a' + i)}, 100)
			want.Write(p)
			if n, err := sp.Write(p); n != len(p) || err != nil {
				t.Errorf("write %d: %d, %v", i, n, err)
			}
		}
		close(wrote)
	}()
	select {
	case <-wrote:
	case <-time.After(5 * time.Second):
		t.Fatal("writes under the limit waited for the reader")
	}
	over := make(chan struct{})
	go func() {
		sp.Write(bytes.Repeat([]byte{'z'}, 200)) // 900 + 200 > 1000: waits
		close(over)
	}()
	select {
	case <-over:
		t.Fatal("a write beyond the limit did not wait")
	case <-time.After(100 * time.Millisecond):
	}
	close(g.open)
	<-over
	want.Write(bytes.Repeat([]byte{'z'}, 200))
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.buf.Bytes(), want.Bytes()) {
		t.Errorf("delivered %d bytes, want %d in order", g.buf.Len(), want.Len())
	}
	// After Close a late write goes straight through.
	if _, err := sp.Write([]byte("late")); err != nil || !bytes.HasSuffix(g.buf.Bytes(), []byte("late")) {
		t.Errorf("late write: %v", err)
	}
}

// TestSpoolWriterError: the writer's error (EPIPE: the reader quit)
// reaches later writes, and Close neither hangs nor loses it.
func TestSpoolWriterError(t *testing.T) {
	g := &gatedWriter{open: make(chan struct{}), err: errors.New("broken pipe")}
	close(g.open)
	sp := newSpool(g, 1000)
	sp.Write([]byte("x"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := sp.Write([]byte("y")); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer's error never reached Write")
		}
		time.Sleep(time.Millisecond)
	}
	if err := sp.Close(); err == nil {
		t.Error("Close lost the writer's error")
	}
}

// TestCommandStreamSpooled: a stream device's writer takes the command's
// output while Flint's stdout takes nothing, and flush (RunCommand, after
// the VM stopped) waits until all of it arrived.
func TestCommandStreamSpooled(t *testing.T) {
	f := newFakeCommandMachine(CommandConfig{})
	g := &gatedWriter{open: make(chan struct{})}
	w := f.c.streamOut(g)
	wrote := make(chan struct{})
	go func() {
		w.Write([]byte("page one\n"))
		w.Write([]byte("page two\n"))
		close(wrote)
	}()
	select {
	case <-wrote:
	case <-time.After(5 * time.Second):
		t.Fatal("the device's write waited for Flint's stdout")
	}
	time.AfterFunc(50*time.Millisecond, func() { close(g.open) })
	f.c.flush()
	if got := g.buf.String(); got != "page one\npage two\n" {
		t.Errorf("after flush %q", got)
	}
}

// TestConsoleTapSpooled: the kernel console's bytes reach the scanner at
// once while --console's writer (Flint's stderr, its reader paused) takes
// nothing: the vCPU's UART write does not wait, a panic is seen, and
// flush delivers the log.
func TestConsoleTapSpooled(t *testing.T) {
	f := newFakeCommandMachine(CommandConfig{PanicGrace: time.Hour})
	g := &gatedWriter{open: make(chan struct{})}
	con := f.c.consoleTap(g)
	wrote := make(chan struct{})
	go func() {
		con.Write([]byte(panicLog))
		close(wrote)
	}()
	select {
	case <-wrote:
	case <-time.After(5 * time.Second):
		t.Fatal("the console write waited for --console's writer")
	}
	if sp := f.c.scanner.Splats(); len(sp) == 0 {
		t.Error("the scanner did not see the panic")
	}
	close(g.open)
	f.c.flush()
	if g.buf.String() != panicLog {
		t.Errorf("console log %q", g.buf.String())
	}
}
