package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flintvm/flint/vmm/vmmtest"
)

// BenchmarkStartup measures `flint run` starting a tiny guest, from outside
// the process, as a user or CI job sees it: a static flint binary (built
// once, CGO_ENABLED=0, as `make build` does) runs a bzImage whose 64-bit
// entry writes port 0x80, prints "hello\n" on COM1 and resets through the
// i8042, with 64 MiB of guest memory, the console on a stdout pipe and
// stdin /dev/null. Each iteration is one process. Metrics are medians over
// the iterations:
//
//	ms/first-guest-insn   flint's own first-guest-io: Go package
//	                      initialisation (vmm.ProcessStart) to the guest's
//	                      first port 0x80 write, its first instruction
//	ms/exec-to-init       exec to package initialisation: the external
//	                      first serial byte minus flint's own first console
//	                      byte (adds to first-guest-insn for exec->insn)
//	ms/first-serial-byte  exec to the first byte on the stdout pipe
//	ms/exit               exec to wait4 returning (VM torn down, process gone)
//	maxrss-KiB            peak RSS of the flint process
//
// Peak RSS comes from separate, untimed runs under GNU time
// (/usr/bin/time -f %M, Debian package "time"). The benchmark's own wait4
// cannot give it: Go starts children with vfork (CLONE_VM), and at exec the
// kernel carries the parent's RSS high-water mark into the child's
// ru_maxrss, so ProcessState.SysUsage().Maxrss is max(this test binary's
// RSS, flint's). Without GNU time the benchmark reports that upper bound and
// says so.
//
// It needs /dev/kvm (any KVM, PVM included) and skips without it.
// scripts/bench-startup.sh runs it together with the same measurement of
// QEMU microvm; BENCHMARKS.md records the results.
func BenchmarkStartup(b *testing.B) {
	if err := benchKVMUsable(); err != nil {
		b.Skipf("no usable /dev/kvm: %v", err)
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "flint")
	if err := benchBuildFlint(bin); err != nil {
		b.Fatal(err)
	}
	kernel := filepath.Join(dir, "tiny.bzImage")
	img := vmmtest.BzImage(vmmtest.Concat(vmmtest.PostCode, vmmtest.Print("hello\n"), vmmtest.ResetViaI8042))
	if err := os.WriteFile(kernel, img, 0o644); err != nil {
		b.Fatal(err)
	}
	argv := []string{bin, "run", "--kernel", kernel, "--memory", "64", "--console", "stdio", "--timing"}
	b.Run("tiny-64MiB", func(b *testing.B) {
		// Warm the page cache and KVM once, outside the measurement.
		if _, err := benchRunOnce(argv); err != nil {
			b.Fatal(err)
		}
		var insn, toInit, serial, exit []float64
		var rss []int64
		rssUpperBound := false
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			s, err := benchRunOnce(argv)
			if err != nil {
				b.Fatal(err)
			}
			insn = append(insn, benchMS(s.firstGuestIO))
			toInit = append(toInit, benchMS(s.firstByte-s.firstConsoleByte))
			serial = append(serial, benchMS(s.firstByte))
			exit = append(exit, benchMS(s.exit))
			b.StopTimer()
			k, err := benchPeakRSS(argv, dir)
			if errors.Is(err, errNoGNUTime) {
				k, rssUpperBound = s.parentMaxrss, true
			} else if err != nil {
				b.Fatal(err)
			}
			rss = append(rss, k)
			b.StartTimer()
		}
		b.ReportMetric(benchMedian(insn), "ms/first-guest-insn")
		b.ReportMetric(benchMedian(toInit), "ms/exec-to-init")
		b.ReportMetric(benchMedian(serial), "ms/first-serial-byte")
		b.ReportMetric(benchMedian(exit), "ms/exit")
		fr := make([]float64, len(rss))
		for i, k := range rss {
			fr[i] = float64(k)
		}
		b.ReportMetric(benchMedian(fr), "maxrss-KiB")
		if rssUpperBound {
			b.Logf("maxrss-KiB is an upper bound (max of this benchmark's own RSS and flint's): "+
				"install GNU time (apt-get install -y time) for flint's own peak RSS; %v", errNoGNUTime)
		}
	})
}

// benchKVMUsable reports why /dev/kvm cannot be used, if it cannot.
func benchKVMUsable() error {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

// benchBuildFlint builds this command as `make build` does (static, no
// cgo, stripped) into out.
func benchBuildFlint(out string) error {
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if p, err := exec.LookPath("go"); err == nil {
		gobin = p
	}
	cmd := exec.Command(gobin, "build", "-trimpath", "-ldflags", "-s -w", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, msg)
	}
	return nil
}

// benchSample is one timed `flint run`.
type benchSample struct {
	firstByte, exit                time.Duration // from just before exec
	firstGuestIO, firstConsoleByte time.Duration // flint's own, from package init
	parentMaxrss                   int64         // KiB; inflated, see BenchmarkStartup
}

var benchTimingRE = regexp.MustCompile(`flint: timing: first-guest-io=(\S+) first-console-byte=(\S+) stop=(\S+)`)

// benchRunOnce execs argv with stdin /dev/null and stdout and stderr on
// pipes, and times the first stdout byte and the exit.
func benchRunOnce(argv []string) (benchSample, error) {
	var s benchSample
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return s, err
	}
	defer devnull.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		return s, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return s, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	// *os.File stdout/stderr: Wait starts no copying goroutines and returns
	// as soon as wait4 does.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, outW, errW
	type result struct {
		first time.Duration
		data  []byte
	}
	read := func(r *os.File, start time.Time, ch chan<- result) {
		var res result
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			if n > 0 && res.first == 0 {
				res.first = time.Since(start)
			}
			if len(res.data) < 1<<16 {
				res.data = append(res.data, buf[:n]...)
			}
			if err != nil {
				break
			}
		}
		r.Close()
		ch <- res
	}
	outCh, errCh := make(chan result, 1), make(chan result, 1)
	start := time.Now()
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return s, err
	}
	go read(outR, start, outCh)
	go read(errR, start, errCh)
	werr := cmd.Wait()
	s.exit = time.Since(start)
	out, stderr := <-outCh, <-errCh
	// flint wrote before it exited: a first byte seen after wait4 returned
	// was seen late (a busy machine); count it as seen at the exit.
	s.firstByte = min(out.first, s.exit)
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		s.parentMaxrss = ru.Maxrss
	}
	if werr != nil || string(out.data) != "hello\n" {
		return s, fmt.Errorf("%s: %v, stdout %q (want %q), stderr %q", strings.Join(argv, " "), werr, out.data, "hello\n", stderr.data)
	}
	m := benchTimingRE.FindSubmatch(stderr.data)
	if m == nil {
		return s, fmt.Errorf("no timing line in flint's stderr %q", stderr.data)
	}
	if s.firstGuestIO, err = time.ParseDuration(string(m[1])); err != nil {
		return s, err
	}
	if s.firstConsoleByte, err = time.ParseDuration(string(m[2])); err != nil {
		return s, err
	}
	if s.firstGuestIO <= 0 || s.firstConsoleByte < s.firstGuestIO {
		return s, fmt.Errorf("implausible timing line %q", m[0])
	}
	return s, nil
}

var errNoGNUTime = errors.New("GNU time (/usr/bin/time) not found")

// benchPeakRSS runs argv once under GNU time and returns its peak RSS in
// KiB. GNU time forks (no shared address space), so the figure is the
// command's own.
func benchPeakRSS(argv []string, dir string) (int64, error) {
	const gnuTime = "/usr/bin/time"
	if fi, err := os.Stat(gnuTime); err != nil || !fi.Mode().IsRegular() {
		return 0, errNoGNUTime
	}
	f := filepath.Join(dir, "maxrss")
	cmd := exec.Command(gnuTime, append([]string{"-f", "%M", "-o", f, "--"}, argv...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("%s under GNU time: %v: %s", argv[0], err, out)
	}
	b, err := os.ReadFile(f)
	if err != nil {
		return 0, err
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 0, errors.New("GNU time wrote nothing")
	}
	return strconv.ParseInt(fields[len(fields)-1], 10, 64)
}

func benchMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func benchMedian(xs []float64) float64 {
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
