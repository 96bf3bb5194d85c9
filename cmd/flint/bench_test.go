package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/flintvm/flint/internal/startbench/launch"
	"github.com/flintvm/flint/internal/testenv"
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
// It needs /dev/kvm (any KVM, PVM included) and skips without it
// (internal/testenv.RequireTinyGuests). With FLINT_BIN set it times that
// binary instead of building one (the nested test host has no Go).
// scripts/bench-startup.sh runs it together with the same measurement of
// QEMU microvm; BENCHMARKS.md records the results.
func BenchmarkStartup(b *testing.B) {
	testenv.RequireTinyGuests(b)
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
			insn = append(insn, benchMS(s.FirstGuestIO))
			toInit = append(toInit, benchMS(s.FirstByte-s.FirstConsoleByte))
			serial = append(serial, benchMS(s.FirstByte))
			exit = append(exit, benchMS(s.Exit))
			b.StopTimer()
			k, err := launch.PeakRSS(argv, dir)
			if errors.Is(err, launch.ErrNoGNUTime) {
				k, rssUpperBound = s.ParentMaxRSS, true
			} else if err != nil {
				b.Fatal(err)
			}
			rss = append(rss, k)
			b.StartTimer()
		}
		b.ReportMetric(launch.Median(insn), "ms/first-guest-insn")
		b.ReportMetric(launch.Median(toInit), "ms/exec-to-init")
		b.ReportMetric(launch.Median(serial), "ms/first-serial-byte")
		b.ReportMetric(launch.Median(exit), "ms/exit")
		fr := make([]float64, len(rss))
		for i, k := range rss {
			fr[i] = float64(k)
		}
		b.ReportMetric(launch.Median(fr), "maxrss-KiB")
		if rssUpperBound {
			b.Logf("maxrss-KiB is an upper bound (max of this benchmark's own RSS and flint's): "+
				"GNU time gives flint's own peak RSS: %v", launch.ErrNoGNUTime)
		}
	})
}

// benchBuildFlint builds this command as `make build` does (static, no
// cgo, stripped) into out, or copies $FLINT_BIN there.
func benchBuildFlint(out string) error {
	if bin := os.Getenv("FLINT_BIN"); bin != "" {
		data, err := os.ReadFile(bin)
		if err != nil {
			return fmt.Errorf("FLINT_BIN: %v", err)
		}
		return os.WriteFile(out, data, 0o755)
	}
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
	launch.Sample
	launch.FlintTiming
}

// benchRunOnce runs argv (flint with --timing) once with launch.Run, checks
// that it printed "hello\n", exited 0 and wrote a plausible timing line,
// and returns the times.
func benchRunOnce(argv []string) (benchSample, error) {
	var s benchSample
	var err error
	if s.Sample, err = launch.Run(argv, false); err != nil {
		return s, err
	}
	if s.Code != 0 || s.Stdout != "hello\n" {
		return s, fmt.Errorf("%s: exit code %d, stdout %q (want 0 and %q), stderr %q",
			strings.Join(argv, " "), s.Code, s.Stdout, "hello\n", s.Stderr)
	}
	if s.FlintTiming, err = launch.ParseFlintTiming(s.Stderr); err != nil {
		return s, err
	}
	if s.FirstGuestIO <= 0 || s.FirstConsoleByte < s.FirstGuestIO {
		return s, fmt.Errorf("implausible timing %+v in flint's stderr %q", s.FlintTiming, s.Stderr)
	}
	return s, nil
}

func benchMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
