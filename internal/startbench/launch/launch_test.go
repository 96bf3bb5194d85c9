package launch

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	s, err := Run([]string{"/bin/sh", "-c", "printf hello; printf oops >&2; exit 3"}, false)
	if err != nil {
		t.Fatalf("Run: %v (a non-zero exit is not an error)", err)
	}
	if s.Stdout != "hello" || s.Stderr != "oops" || s.Code != 3 {
		t.Errorf("stdout %q, stderr %q, code %d; want %q, %q, 3", s.Stdout, s.Stderr, s.Code, "hello", "oops")
	}
	if s.FirstByte <= 0 || s.FirstByte > s.Exit {
		t.Errorf("FirstByte %v, Exit %v; want 0 < FirstByte <= Exit", s.FirstByte, s.Exit)
	}
	if s.FirstPost != 0 {
		t.Errorf("FirstPost %v without post; want 0", s.FirstPost)
	}
	if s.ParentMaxRSS <= 0 {
		t.Errorf("ParentMaxRSS %d; want > 0", s.ParentMaxRSS)
	}
}

func TestRunSilent(t *testing.T) {
	s, err := Run([]string{"/bin/sh", "-c", "exit 0"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if s.FirstByte != 0 || s.Stdout != "" || s.Code != 0 || s.Exit <= 0 || s.Clamped {
		t.Errorf("%+v; want no first byte, no stdout, code 0, Exit > 0, not clamped", s)
	}
}

func TestRunPost(t *testing.T) {
	s, err := Run([]string{"/bin/sh", "-c", "echo x >&3; echo y"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if s.FirstPost <= 0 || s.FirstPost > s.Exit {
		t.Errorf("FirstPost %v, Exit %v; want 0 < FirstPost <= Exit", s.FirstPost, s.Exit)
	}
	if s.Stdout != "y\n" || s.Code != 0 {
		t.Errorf("stdout %q, code %d; want %q, 0", s.Stdout, s.Code, "y\n")
	}
}

func TestRunStdoutBounded(t *testing.T) {
	// 200 KiB of output: all read (the child does not block), about 64 KiB kept.
	s, err := Run([]string{"/bin/sh", "-c", "head -c 204800 /dev/zero"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if s.Code != 0 || len(s.Stdout) < maxData || len(s.Stdout) > maxData+4096 {
		t.Errorf("code %d, %d bytes of stdout kept; want 0 and %d to %d", s.Code, len(s.Stdout), maxData, maxData+4096)
	}
}

func TestRunNoSuchCommand(t *testing.T) {
	if _, err := Run([]string{"/nonexistent/command"}, false); err == nil {
		t.Error("Run of a missing command: no error")
	}
}

func TestPeakRSS(t *testing.T) {
	if _, err := GNUTime(); err != nil {
		t.Skip(err)
	}
	k, err := PeakRSS([]string{"/bin/sh", "-c", "exit 0"}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if k <= 0 {
		t.Errorf("PeakRSS %d KiB; want > 0", k)
	}
	// GNU time writes "Command exited with non-zero status 3" before the
	// figure, and the run fails.
	if _, err := PeakRSS([]string{"/bin/sh", "-c", "echo why; exit 3"}, t.TempDir()); err == nil || !strings.Contains(err.Error(), "why") {
		t.Errorf("PeakRSS of a failing command: %v; want an error with its output", err)
	}
}

func TestPeakRSSNoGNUTime(t *testing.T) {
	saved := gnuTime
	gnuTime = ""
	defer func() { gnuTime = saved }()
	if _, err := PeakRSS([]string{"/bin/true"}, t.TempDir()); !errors.Is(err, ErrNoGNUTime) {
		t.Errorf("PeakRSS without GNU time: %v; want ErrNoGNUTime", err)
	}
}

func TestParseFlintTiming(t *testing.T) {
	stderr := "some log line\nflint: timing: first-guest-io=1.5ms first-console-byte=2ms stop=3.25ms\n"
	got, err := ParseFlintTiming(stderr)
	if err != nil {
		t.Fatal(err)
	}
	want := FlintTiming{1500 * time.Microsecond, 2 * time.Millisecond, 3250 * time.Microsecond}
	if got != want {
		t.Errorf("ParseFlintTiming = %+v; want %+v", got, want)
	}
	for _, bad := range []string{
		"",
		"garbage",
		"flint: timing: first-guest-io=1ms first-console-byte=2ms", // no stop
		"flint: timing: first-guest-io=soon first-console-byte=2ms stop=3ms",
	} {
		if got, err := ParseFlintTiming(bad); err == nil {
			t.Errorf("ParseFlintTiming(%q) = %+v, nil; want an error", bad, got)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{}, 0},
		{[]float64{7}, 7},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{5, 5, 1, 9, 100}, 5},
	} {
		in := append([]float64(nil), c.xs...)
		if got := Median(c.xs); got != c.want {
			t.Errorf("Median(%v) = %v; want %v", c.xs, got, c.want)
		}
		for i := range in {
			if in[i] != c.xs[i] {
				t.Errorf("Median modified its argument: %v, was %v", c.xs, in)
				break
			}
		}
	}
}
