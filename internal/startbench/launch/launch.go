// Package launch times a command's start: exec to first output byte to
// exit, peak RSS under GNU time, flint's --timing line. It is the one
// measurement behind both internal/startbench and cmd/flint's
// BenchmarkStartup, so that the two report the same thing.
package launch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runTimeout bounds every run: a guest that never resets must not hang the
// benchmark. Run and PeakRSS kill the command when it expires.
const runTimeout = 30 * time.Second

// maxData is how much of each of the command's outputs Sample keeps.
const maxData = 1 << 16

// Sample is one timed run. Times are from just before the exec.
type Sample struct {
	FirstByte time.Duration // exec -> first byte on stdout; 0 if none
	FirstPost time.Duration // exec -> first byte on fd 3 (Run with post); 0 if none
	Exit      time.Duration // exec -> wait4 returned
	Code      int           // exit code; -1 if killed by a signal
	Clamped   bool          // a first byte was seen after wait4 returned (busy machine)
	Stdout    string        // the first 64 KiB or so of stdout
	Stderr    string        // the first 64 KiB or so of stderr

	// ParentMaxRSS is ru_maxrss (KiB) from this process's own wait4. It is
	// an upper bound, not the command's own peak: Go starts children with
	// vfork (CLONE_VM), and at exec the kernel carries the parent's RSS
	// high-water mark into the child's ru_maxrss, so it is max(this
	// process's RSS, the command's). PeakRSS measures the command's own.
	ParentMaxRSS int64
}

// Run execs argv once with stdin /dev/null and stdout and stderr on pipes,
// and times the first stdout byte and the exit. With post, fd 3 in the
// child is the write end of a pipe whose first byte is timed too.
//
// A non-zero exit is not an error: Code carries it. Run returns an error
// when the command cannot be started, cannot be waited for, or was killed
// after 30 s; the Sample is filled in as far as it got.
func Run(argv []string, post bool) (Sample, error) {
	var s Sample
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return s, err
	}
	defer devnull.Close()
	// The parent's ends stay open until their reader is done with them;
	// the child's ends are closed as soon as the child has them.
	var readEnds, writeEnds []*os.File
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			f.Close()
		}
	}
	npipes := 2
	if post {
		npipes = 3
	}
	for range npipes {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll(readEnds)
			closeAll(writeEnds)
			return s, err
		}
		readEnds, writeEnds = append(readEnds, r), append(writeEnds, w)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	// Stdout and stderr are *os.File, so Wait starts no copying goroutines
	// and returns as soon as wait4 does.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, writeEnds[0], writeEnds[1]
	if post {
		cmd.ExtraFiles = []*os.File{writeEnds[2]}
	}
	chans := make([]chan firstRead, npipes)
	for i := range chans {
		chans[i] = make(chan firstRead, 1)
	}

	start := time.Now()
	err = cmd.Start()
	closeAll(writeEnds)
	if err != nil {
		closeAll(readEnds)
		return s, err
	}
	killer := time.AfterFunc(runTimeout, func() { _ = cmd.Process.Kill() })
	defer killer.Stop()
	for i, r := range readEnds {
		go readFirst(r, start, chans[i])
	}
	werr := cmd.Wait()
	s.Exit = time.Since(start)
	o, e := <-chans[0], <-chans[1]
	s.FirstByte, s.Stdout, s.Stderr = o.at, string(o.data), string(e.data)
	if post {
		s.FirstPost = (<-chans[2]).at
	}
	// The child wrote before it exited: a first byte seen after wait4
	// returned was seen late (this process was not scheduled in time, on a
	// busy machine). Clamp it and count it.
	for _, d := range []*time.Duration{&s.FirstByte, &s.FirstPost} {
		if *d > s.Exit {
			*d = s.Exit
			s.Clamped = true
		}
	}
	s.Code = cmd.ProcessState.ExitCode()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		s.ParentMaxRSS = ru.Maxrss
	}
	if !killer.Stop() {
		return s, fmt.Errorf("%s: killed after %v (stdout %q, stderr %q)", argv[0], runTimeout, s.Stdout, s.Stderr)
	}
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) {
		return s, werr
	}
	return s, nil
}

// firstRead is what readFirst saw on one pipe.
type firstRead struct {
	at   time.Duration // since start, of the first byte; 0 if none
	data []byte        // the first maxData bytes or so
}

// readFirst reads r to EOF, closes it and sends what it saw on ch.
func readFirst(r *os.File, start time.Time, ch chan<- firstRead) {
	var fr firstRead
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		if n > 0 && fr.at == 0 {
			fr.at = time.Since(start)
		}
		if len(fr.data) < maxData {
			fr.data = append(fr.data, buf[:n]...)
		}
		if err != nil {
			break
		}
	}
	r.Close()
	ch <- fr
}

// ErrNoGNUTime is PeakRSS's error when GNU time is not installed.
var ErrNoGNUTime = errors.New("GNU time not found at /usr/bin/time or /bin/time (apt-get install -y time)")

// gnuTime is GNU time's path, found once; "" if it is not installed.
var gnuTime = func() string {
	for _, p := range []string{"/usr/bin/time", "/bin/time"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}()

// GNUTime returns the path of GNU time, or ErrNoGNUTime.
func GNUTime() (string, error) {
	if gnuTime == "" {
		return "", ErrNoGNUTime
	}
	return gnuTime, nil
}

// PeakRSS runs argv once, untimed, under GNU time (/usr/bin/time -f %M,
// Debian package "time") and returns its peak RSS in KiB. GNU time forks a
// small child (no shared address space, unlike Go's vfork), so the figure
// is the command's own. It writes its report to a file in dir. Without GNU
// time the error is ErrNoGNUTime.
func PeakRSS(argv []string, dir string) (int64, error) {
	gt, err := GNUTime()
	if err != nil {
		return 0, err
	}
	f := filepath.Join(dir, "maxrss")
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, gt, append([]string{"-f", "%M", "-o", f, "--"}, argv...)...)
	// A process the command left behind must not hold Wait on the output
	// pipe after the command has been killed.
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out // stdin is /dev/null
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%s under GNU time: %w: %q", argv[0], err, clip(out.Bytes()))
	}
	b, err := os.ReadFile(f)
	if err != nil {
		return 0, err
	}
	// GNU time prefixes "Command exited with non-zero status" lines; the
	// figure is the last field.
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 0, errors.New("GNU time wrote nothing")
	}
	return strconv.ParseInt(fields[len(fields)-1], 10, 64)
}

// clip is at most maxData bytes of b.
func clip(b []byte) []byte { return b[:min(len(b), maxData)] }

// FlintTiming is flint's own `--timing` line: times from Go package
// initialisation (vmm.ProcessStart).
type FlintTiming struct {
	FirstGuestIO     time.Duration // the guest's first port 0x80 write
	FirstConsoleByte time.Duration // the first byte flint wrote to the console
	Stop             time.Duration // the line printed (VM closed)
}

var timingRE = regexp.MustCompile(`flint: timing: first-guest-io=(\S+) first-console-byte=(\S+) stop=(\S+)`)

// ParseFlintTiming finds and parses the `flint: timing: first-guest-io=X
// first-console-byte=Y stop=Z` line in flint's stderr.
func ParseFlintTiming(stderr string) (FlintTiming, error) {
	m := timingRE.FindStringSubmatch(stderr)
	if m == nil {
		return FlintTiming{}, fmt.Errorf("no timing line in flint's stderr %q", stderr)
	}
	var t FlintTiming
	var err error
	for i, d := range []*time.Duration{&t.FirstGuestIO, &t.FirstConsoleByte, &t.Stop} {
		if *d, err = time.ParseDuration(m[i+1]); err != nil {
			return t, fmt.Errorf("timing line %q: %w", m[0], err)
		}
	}
	return t, nil
}

// Median is the median of xs (the mean of the middle two for an even
// count), 0 for none. xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
