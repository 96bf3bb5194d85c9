package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/devices/exitdev"
)

// OutputDrain bounds how long the agent waits, after the command exited,
// for its output pipes to reach EOF (a background process the command left
// behind may hold them open) before it reports. Time a relay spends in a
// device write that the host holds up (stuckWrite or longer: its stdout
// piped to a slow reader) does not count: that output was written before
// the command exited, and the host is alive to take it.
const OutputDrain = 2 * time.Second

// stuckWrite is how long a device write may take before it counts as the
// host's back-pressure rather than a steady stream.
const stuckWrite = 50 * time.Millisecond

// streams connects the command's standard streams to the Spec's devices
// through pipes the agent relays: the command sees pipes (as under a CI
// runner), not the virtio-console ttys; stdout and stderr are copied to
// their devices byte for byte, and stdin arrives in frames (frame.go) so
// that the host's end of input reaches the command as EOF.
type streams struct {
	stdin, stdout, stderr *os.File   // the command's ends
	child                 []*os.File // closed once the command started
	devs                  []*os.File // the devices, closed by finish
	outs                  []*os.File // devices the output relays write
	writers               []*relayWriter
	relays                sync.WaitGroup
	relayErr              error
	mu                    sync.Mutex
	stdinW                *os.File // closed by the stdin relay or finish
}

// openStreams opens s's devices (ttys put in raw mode) and the pipes.
func openStreams(s *Spec) (_ *streams, err error) {
	st := &streams{}
	defer func() {
		if err != nil {
			st.closeAll()
		}
	}()
	if st.stdin, err = st.openStdin(s.Stdin); err != nil {
		return nil, err
	}
	if st.stdout, err = st.output(s.Stdout); err != nil {
		return nil, err
	}
	if s.Stderr == s.Stdout {
		st.stderr = st.stdout
	} else if st.stderr, err = st.output(s.Stderr); err != nil {
		return nil, err
	}
	return st, nil
}

func (st *streams) device(name string, flag int) (*os.File, error) {
	f, err := os.OpenFile(name, flag|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, &StepError{exitdev.StageExec, err}
	}
	st.devs = append(st.devs, f)
	if err := makeRaw(int(f.Fd())); err != nil {
		return nil, &StepError{exitdev.StageExec, err}
	}
	return f, nil
}

// openStdin returns the command's stdin: /dev/null, or a pipe fed by a
// relay that decodes the frames read from the device.
func (st *streams) openStdin(name string) (*os.File, error) {
	if name == "" {
		return st.devNull(os.O_RDONLY)
	}
	dev, r, w, err := st.pipe(name, os.O_RDWR)
	if err != nil {
		return nil, err
	}
	// The port is open and raw: tell the host it may send (frame.go). A
	// stdin that is not a tty (tests use files) gets no ready byte.
	if isTTY(dev) {
		if _, err := dev.Write([]byte{ReadyByte}); err != nil {
			r.Close()
			w.Close()
			return nil, &StepError{exitdev.StageExec, fmt.Errorf("stdin %s: %w", name, err)}
		}
	}
	st.child = append(st.child, r)
	st.stdinW = w
	go func() {
		_ = copyFrames(w, dev) // a command that stops reading is no error of the run
		st.closeStdin()
	}()
	return r, nil
}

// output returns the write end of a pipe whose bytes a relay copies to
// the device name, or /dev/null when name is empty.
func (st *streams) output(name string) (*os.File, error) {
	if name == "" {
		return st.devNull(os.O_WRONLY)
	}
	dev, r, w, err := st.pipe(name, os.O_WRONLY)
	if err != nil {
		return nil, err
	}
	st.child = append(st.child, w)
	st.outs = append(st.outs, dev)
	rw := &relayWriter{dst: dev}
	st.writers = append(st.writers, rw)
	st.relays.Add(1)
	go func() {
		defer st.relays.Done()
		defer r.Close()
		if _, err := io.Copy(rw, r); err != nil {
			st.mu.Lock()
			st.relayErr = errors.Join(st.relayErr, err)
			st.mu.Unlock()
		}
	}()
	return w, nil
}

// pipe opens the device name (flag: its direction) and a pipe to relay it.
func (st *streams) pipe(name string, flag int) (dev, r, w *os.File, err error) {
	if dev, err = st.device(name, flag); err != nil {
		return nil, nil, nil, err
	}
	if r, w, err = os.Pipe(); err != nil {
		return nil, nil, nil, &StepError{exitdev.StageExec, err}
	}
	return dev, r, w, nil
}

func (st *streams) devNull(flag int) (*os.File, error) {
	f, err := os.OpenFile(os.DevNull, flag, 0)
	if err != nil {
		return nil, &StepError{exitdev.StageExec, err}
	}
	st.child = append(st.child, f)
	return f, nil
}

// started closes the agent's copies of the command's ends, so the output
// relays see EOF once the command (and whatever inherited them) is gone.
func (st *streams) started() {
	for _, f := range st.child {
		f.Close()
	}
	st.child = nil
}

func (st *streams) closeStdin() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.stdinW != nil {
		st.stdinW.Close()
		st.stdinW = nil
	}
}

// relayWriter is an output relay's device, with the start of the write
// in progress (UnixNano, 0 for none).
type relayWriter struct {
	dst   *os.File
	since atomic.Int64
}

func (w *relayWriter) Write(p []byte) (int, error) {
	w.since.Store(time.Now().UnixNano())
	defer w.since.Store(0)
	return w.dst.Write(p)
}

// stuck reports whether a device write has been held up since before
// now-stuckWrite.
func (st *streams) stuck(now time.Time) bool {
	for _, w := range st.writers {
		if s := w.since.Load(); s != 0 && now.Sub(time.Unix(0, s)) >= stuckWrite {
			return true
		}
	}
	return false
}

// finish waits for the output relays (drain, not counting device writes
// the host holds up: OutputDrain), waits until each output device has
// sent what it holds (tcdrain: the host has the bytes before the agent
// reports), and closes everything. It returns the relays' errors.
func (st *streams) finish(drain time.Duration) error {
	done := make(chan struct{})
	go func() {
		st.relays.Wait()
		close(done)
	}()
	tick := time.NewTicker(min(drain/4+1, 10*time.Millisecond))
	defer tick.Stop()
	deadline := time.Now().Add(drain)
wait:
	for {
		select {
		case <-done:
			break wait
		case now := <-tick.C:
			if st.stuck(now) {
				deadline = now.Add(drain)
			} else if !now.Before(deadline) {
				break wait
			}
		}
	}
	for _, d := range st.outs {
		// TCSBRK with a non-zero argument is tcdrain(3); a plain file
		// (tests) answers ENOTTY.
		_ = unix.IoctlSetInt(int(d.Fd()), unix.TCSBRK, 1)
	}
	st.closeStdin()
	st.mu.Lock()
	err := st.relayErr
	st.mu.Unlock()
	st.closeAll()
	return err
}

func (st *streams) closeAll() {
	st.started()
	st.closeStdin()
	for _, f := range st.devs {
		f.Close()
	}
	st.devs = nil
}

// isTTY reports whether f is a terminal.
func isTTY(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// makeRaw puts a tty into raw mode, as cfmakeraw(3) does: bytes pass
// unchanged both ways (no \n to \r\n, no echo, no line editing, no
// signal characters). Anything that is not a tty is left alone.
func makeRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) {
		return nil
	}
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag = t.Cflag&^(unix.CSIZE|unix.PARENB) | unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}
