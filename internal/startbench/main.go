// Command startbench measures how fast a VMM process starts a tiny guest,
// from outside the process, the same way for every VMM it compares.
//
//	startbench image -o FILE
//	    writes the tiny bzImage the start-up benchmarks use: its 64-bit
//	    entry writes port 0x80, prints "hello\n" on COM1 and resets through
//	    the i8042; its real-mode entry (what BIOS-style loaders such as
//	    QEMU's run) writes port 0x80, prints "F\n" and resets the same way.
//
//	startbench compare -flint BIN -kernel FILE [-qemu BIN] [-n 20] [-md OUT] [-csv OUT]
//	    runs flint and QEMU microvm on the image, interleaved, and prints a
//	    Markdown table of medians.
//
//	startbench run [-n 20] -- CMD ARGS...
//	    measures any command the same way.
//
// Each timed run execs the command with stdin /dev/null and stdout, stderr
// (and, for QEMU, fd 3) on pipes, and records, from just before the exec:
// the first byte on stdout, the first byte on fd 3, and the return of
// wait4 (the process has exited and released everything).
//
// Peak RSS is measured in separate, untimed runs under GNU time
// (/usr/bin/time -f %M, Debian package "time"), never from this process's
// own wait4: Go starts children with vfork (CLONE_VM), and at exec the
// kernel copies the parent's RSS high-water mark into the child's
// ru_maxrss, so a Go parent's wait4 reports max(parent RSS, child RSS).
// GNU time forks a small child instead, so what it reports is the command's
// own peak.
package main

import (
	"bytes"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flintvm/flint/internal/startbench/launch"
	"github.com/flintvm/flint/vmm/vmmtest"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "image":
		err = cmdImage(os.Args[2:])
	case "compare":
		err = cmdCompare(os.Args[2:])
	case "run":
		err = cmdRun(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "startbench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  startbench image -o FILE
  startbench compare -flint BIN -kernel FILE [-qemu BIN] [-n N] [-warmup N] [-md FILE] [-csv FILE]
  startbench run [-n N] [-warmup N] [-rss] -- CMD ARGS...
`)
	os.Exit(2)
}

// TinyImage is the benchmark payload (the same one cmd/flint's
// BenchmarkStartup uses).
func TinyImage() []byte {
	return vmmtest.BzImage(vmmtest.Concat(vmmtest.PostCode, vmmtest.Print("hello\n"), vmmtest.ResetViaI8042))
}

func cmdImage(args []string) error {
	fs := flag.NewFlagSet("image", flag.ExitOnError)
	out := fs.String("o", "", "output file")
	_ = fs.Parse(args)
	if *out == "" {
		return errors.New("image: -o FILE is required")
	}
	return os.WriteFile(*out, TinyImage(), 0o644)
}

// target is one VMM under test.
type target struct {
	name    string
	argv    []string
	post    bool   // fd 3 carries the guest's port 0x80 writes
	want    string // expected stdout
	samples []launch.Sample
	timings []launch.FlintTiming // flint only
	rss     []int64
}

func (t *target) check(s launch.Sample) error {
	if s.Code != 0 || s.Stdout != t.want {
		return fmt.Errorf("%s: exit code %d, stdout %q (want 0 and %q), stderr %q", t.name, s.Code, s.Stdout, t.want, s.Stderr)
	}
	return nil
}

func cmdCompare(args []string) error {
	fs := flag.NewFlagSet("compare", flag.ExitOnError)
	flint := fs.String("flint", "", "flint binary")
	qemu := fs.String("qemu", "qemu-system-x86_64", "QEMU binary; empty to skip QEMU")
	qemuCPU := fs.String("qemu-cpu", "host,-arch-capabilities", "QEMU -cpu value (PVM refuses MSR 0x10a, hence -arch-capabilities)")
	kernel := fs.String("kernel", "", "tiny bzImage (startbench image -o FILE)")
	memMiB := fs.Int("memory", 64, "guest memory in MiB")
	n := fs.Int("n", 20, "timed runs per VMM (plus as many untimed RSS runs)")
	warmup := fs.Int("warmup", 2, "untimed warm-up runs per VMM")
	mdOut := fs.String("md", "", "also write the Markdown table to this file")
	csvOut := fs.String("csv", "", "write every sample to this CSV file")
	_ = fs.Parse(args)
	if *flint == "" || *kernel == "" {
		return errors.New("compare: -flint and -kernel are required")
	}
	mem := strconv.Itoa(*memMiB)
	targets := []*target{{
		name: "flint",
		argv: []string{*flint, "run", "--kernel", *kernel, "--memory", mem, "--console", "stdio", "--timing"},
		want: "hello\n",
	}}
	var qemuNote string
	if *qemu != "" {
		qargv := []string{*qemu, "-M", "microvm", "-accel", "kvm", "-cpu", *qemuCPU, "-m", mem,
			"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
			// microvm has no i8042; the guest resets through one, and
			// -no-reboot turns that reset into QEMU's exit.
			"-device", "i8042",
			// The guest's first instruction writes port 0x80: send it to fd 3.
			"-chardev", "file,id=post,path=/dev/fd/3", "-device", "isa-debugcon,iobase=0x80,chardev=post",
			"-kernel", *kernel, "-no-reboot"}
		if p, err := exec.LookPath(*qemu); err != nil {
			qemuNote = fmt.Sprintf("QEMU not measured: %v (apt-get install -y qemu-system-x86)", err)
		} else {
			qargv[0] = p
			targets = append(targets, &target{name: "qemu-microvm", argv: qargv, post: true, want: "F\n"})
		}
	}
	gnuTime, err := launch.GNUTime()
	if err != nil {
		return fmt.Errorf("%w: peak RSS needs it, see the package comment", err)
	}
	tmp, err := os.MkdirTemp("", "startbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// A target that cannot run the image is reported, not fatal, unless it
	// is flint.
	for _, t := range slices.Clone(targets) {
		for i := 0; i < *warmup || i == 0; i++ {
			s, err := launch.Run(t.argv, t.post)
			if err == nil {
				err = t.check(s)
			}
			if err != nil {
				if t.name == "flint" {
					return err
				}
				qemuNote = fmt.Sprintf("QEMU could not run the image: %v", err)
				targets = slices.DeleteFunc(targets, func(x *target) bool { return x == t })
				break
			}
		}
	}
	fmt.Fprintf(os.Stderr, "startbench: %d timed + %d RSS runs per VMM, interleaved\n", *n, *n)
	loadBefore := loadavg()
	for i := 0; i < *n; i++ {
		for j := range targets {
			t := targets[(i+j)%len(targets)] // alternate which VMM goes first
			s, err := launch.Run(t.argv, t.post)
			if err == nil {
				err = t.check(s)
			}
			if err != nil {
				return fmt.Errorf("run %d: %w", i, err)
			}
			t.samples = append(t.samples, s)
			if t.name == "flint" {
				ft, err := launch.ParseFlintTiming(s.Stderr)
				if err != nil {
					return err
				}
				t.timings = append(t.timings, ft)
			}
			rss, err := launch.PeakRSS(t.argv, tmp)
			if err != nil {
				return err
			}
			t.rss = append(t.rss, rss)
		}
	}

	var md bytes.Buffer
	writeTable(&md, targets, *memMiB, *n)
	fmt.Fprintf(&md, "\nLoad average (1, 5, 15 min) before: %s; after: %s.\n", loadBefore, loadavg())
	if qemuNote != "" {
		fmt.Fprintf(&md, "\n%s\n", qemuNote)
	}
	fmt.Fprintln(&md, "\nCommands (timed runs; RSS runs prefix `"+gnuTime+" -f %M`):")
	fmt.Fprintln(&md)
	for _, t := range targets {
		fmt.Fprintf(&md, "    %s\n", strings.Join(t.argv, " "))
	}
	os.Stdout.Write(md.Bytes())
	if *mdOut != "" {
		if err := os.WriteFile(*mdOut, md.Bytes(), 0o644); err != nil {
			return err
		}
	}
	if *csvOut != "" {
		if err := writeCSV(*csvOut, targets); err != nil {
			return err
		}
	}
	return nil
}

// loadavg is the first three fields of /proc/loadavg: other work on the
// machine shows up as noise in every figure.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// stats is median [min-max] of xs.
type stats struct{ med, lo, hi float64 }

func summarize(xs []float64) stats {
	if len(xs) == 0 {
		return stats{}
	}
	return stats{launch.Median(xs), slices.Min(xs), slices.Max(xs)}
}

func (s stats) String() string {
	if s == (stats{}) {
		return "n/a"
	}
	return fmt.Sprintf("%.2f (%.2f-%.2f)", s.med, s.lo, s.hi)
}

func collect[T any](xs []T, f func(T) float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// metrics computes the compared figures of one target.
func metrics(t *target) (insn, serial, exit, teardown, rss stats) {
	serial = summarize(collect(t.samples, func(s launch.Sample) float64 { return ms(s.FirstByte) }))
	exit = summarize(collect(t.samples, func(s launch.Sample) float64 { return ms(s.Exit) }))
	teardown = summarize(collect(t.samples, func(s launch.Sample) float64 { return ms(s.Exit - s.FirstByte) }))
	rss = summarize(collect(t.rss, func(k int64) float64 { return float64(k) / 1024 }))
	if t.post {
		insn = summarize(collect(t.samples, func(s launch.Sample) float64 { return ms(s.FirstPost) }))
	} else if len(t.timings) == len(t.samples) {
		// Flint: exec -> first serial byte, minus flint's own gap between
		// its first port 0x80 write and its first console byte.
		xs := make([]float64, len(t.samples))
		for i, s := range t.samples {
			xs[i] = ms(s.FirstByte - (t.timings[i].FirstConsoleByte - t.timings[i].FirstGuestIO))
		}
		insn = summarize(xs)
	}
	return
}

func writeTable(w io.Writer, targets []*target, memMiB, n int) {
	type row struct {
		name string
		s    [5]stats
	}
	var rows []row
	for _, t := range targets {
		var r row
		r.name = t.name
		r.s[0], r.s[1], r.s[2], r.s[3], r.s[4] = metrics(t)
		rows = append(rows, r)
	}
	fmt.Fprintf(w, "Median (min-max) of %d runs each", n)
	if memMiB > 0 {
		fmt.Fprintf(w, ", guest memory %d MiB", memMiB)
	}
	fmt.Fprint(w, "; times in ms from just before exec.\n\n")
	fmt.Fprint(w, "| | ")
	for _, r := range rows {
		fmt.Fprintf(w, "%s | ", r.name)
	}
	if len(rows) == 2 {
		fmt.Fprintf(w, "%s / %s |", rows[0].name, rows[1].name)
	}
	fmt.Fprintln(w)
	fmt.Fprint(w, "|---|")
	for range rows {
		fmt.Fprint(w, "---|")
	}
	if len(rows) == 2 {
		fmt.Fprint(w, "---|")
	}
	fmt.Fprintln(w)
	labels := []string{
		"exec → first payload instruction (port 0x80 write)¹, ms",
		"exec → first serial byte on stdout, ms",
		"exec → exit (wait4 returns), ms",
		"first serial byte → exit (reset, teardown), ms",
		"peak RSS (ru_maxrss via GNU time), MiB",
	}
	for i, l := range labels {
		fmt.Fprintf(w, "| %s | ", l)
		for _, r := range rows {
			fmt.Fprintf(w, "%s | ", r.s[i])
		}
		if len(rows) == 2 && rows[1].s[i].med > 0 {
			fmt.Fprintf(w, "%.2f |", rows[0].s[i].med/rows[1].s[i].med)
		}
		fmt.Fprintln(w)
	}
	switch {
	case slices.ContainsFunc(targets, func(t *target) bool { return t.post }):
		fmt.Fprintln(w, "\n¹ QEMU: measured, the guest's port 0x80 write reaches a pipe through isa-debugcon; the "+
			"payload runs after QEMU's firmware (qboot). Flint (no firmware): derived, exec → first serial byte "+
			"minus Flint's own first-console-byte − first-guest-io.")
	case slices.ContainsFunc(targets, func(t *target) bool { return len(t.timings) > 0 }):
		fmt.Fprintln(w, "\n¹ Derived: exec → first serial byte minus Flint's own first-console-byte − first-guest-io.")
	}
	for _, t := range targets {
		if c := len(slices.DeleteFunc(slices.Clone(t.samples), func(s launch.Sample) bool { return !s.Clamped })); c > 0 {
			fmt.Fprintf(w, "\nWarning: in %d of %s's runs the first byte was seen only after the process had exited "+
				"(the benchmark was not scheduled in time: the machine is busy); those first-byte times were clamped to the exit time.\n", c, t.name)
		}
	}
	for _, t := range targets {
		if len(t.timings) == 0 {
			continue
		}
		gio := summarize(collect(t.timings, func(x launch.FlintTiming) float64 { return ms(x.FirstGuestIO) }))
		cb := summarize(collect(t.timings, func(x launch.FlintTiming) float64 { return ms(x.FirstConsoleByte) }))
		st := summarize(collect(t.timings, func(x launch.FlintTiming) float64 { return ms(x.Stop) }))
		xs := make([]float64, len(t.samples))
		for i, s := range t.samples {
			xs[i] = ms(s.FirstByte - t.timings[i].FirstConsoleByte)
		}
		pre := summarize(xs)
		fmt.Fprintf(w, "\n%s's own `--timing` (from Go package initialisation, vmm.ProcessStart): first guest I/O %s ms, "+
			"first console byte %s ms, timing line printed (VM closed) %s ms. "+
			"exec → package initialisation (external first byte minus flint's first console byte): %s ms.\n",
			t.name, gio, cb, st, pre)
	}
}

func writeCSV(path string, targets []*target) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"vmm", "run", "first_post_ms", "first_byte_ms", "exit_ms", "maxrss_kib",
		"flint_first_guest_io_ms", "flint_first_console_byte_ms", "flint_stop_ms"})
	for _, t := range targets {
		for i, s := range t.samples {
			rec := []string{t.name, strconv.Itoa(i), f3(ms(s.FirstPost)), f3(ms(s.FirstByte)), f3(ms(s.Exit)),
				strconv.FormatInt(t.rss[i], 10), "", "", ""}
			if i < len(t.timings) {
				ft := t.timings[i]
				rec[6], rec[7], rec[8] = f3(ms(ft.FirstGuestIO)), f3(ms(ft.FirstConsoleByte)), f3(ms(ft.Stop))
			}
			_ = w.Write(rec)
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func f3(x float64) string { return strconv.FormatFloat(x, 'f', 3, 64) }

func cmdRun(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	n := fs.Int("n", 20, "timed runs")
	warmup := fs.Int("warmup", 2, "untimed warm-up runs")
	rss := fs.Bool("rss", true, "also measure peak RSS under GNU time")
	post := fs.Bool("post", false, "time the first byte the command writes to fd 3")
	_ = fs.Parse(args)
	argv := fs.Args()
	if len(argv) == 0 {
		return errors.New("run: no command")
	}
	tmp, err := os.MkdirTemp("", "startbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	t := &target{name: filepath.Base(argv[0]), argv: argv, post: *post}
	for i := 0; i < *warmup; i++ {
		if _, err := launch.Run(argv, *post); err != nil {
			return err
		}
	}
	for i := 0; i < *n; i++ {
		s, err := launch.Run(argv, *post)
		if err != nil {
			return err
		}
		if s.Code != 0 {
			return fmt.Errorf("exit code %d, stderr %q", s.Code, s.Stderr)
		}
		t.samples = append(t.samples, s)
		if ft, err := launch.ParseFlintTiming(s.Stderr); err == nil {
			t.timings = append(t.timings, ft)
		}
		if *rss {
			k, err := launch.PeakRSS(argv, tmp)
			if err != nil {
				return err
			}
			t.rss = append(t.rss, k)
		}
	}
	if len(t.timings) != len(t.samples) {
		t.timings = nil
	}
	writeTable(os.Stdout, []*target{t}, 0, *n)
	return nil
}
