// Command umlperf names the frames of a user-mode Linux (UML) profile:
// it reads `perf script -F comm,time,ip,sym,dso` output of a system-wide
// `perf record -g` on stdin and prints, for one command's samples, each
// function's share of the samples it appears in (children) and is the
// leaf of (self). Debian's linux.uml is stripped, so its frames are
// named from the guest's /proc/kallsyms (scripts/uml-net-case.sh
// --perf-uml copies it out): the executable is not position-independent,
// so its kernel runs at the addresses kallsyms gives.
//
// Usage: perf script -i F -F comm,time,ip,sym,dso | umlperf -kallsyms K [-comm linux.uml]
// [-exe linux.uml] [-base 0x60000000] [-from S] [-to S] [-top N]
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
)

func main() {
	err := run(os.Args[1:], os.Stdin, os.Stdout)
	var usage usageError
	switch {
	case errors.As(err, &usage):
		fmt.Fprintln(os.Stderr, "umlperf:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "umlperf:", err)
		os.Exit(1)
	}
}

// usageError is a bad flag: exit status 2.
type usageError struct{ error }

func run(args []string, in io.Reader, out io.Writer) error {
	fs := flag.NewFlagSet("umlperf", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	kallsyms := fs.String("kallsyms", "", "the UML guest's /proc/kallsyms, copied out (required)")
	comm := fs.String("comm", "linux.uml", "the command whose samples count")
	exe := fs.String("exe", "linux.uml", "the UML executable's base name, as perf prints its path")
	base := fs.String("base", "0x60000000", "the executable's load address minus its file offset (readelf -l: a LOAD's VirtAddr - Offset)")
	from := fs.Float64("from", 0, "first sample time (seconds, perf's clock)")
	to := fs.Float64("to", 0, "last sample time; 0: no end")
	top := fs.Int("top", 60, "functions to print; 0: all")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	switch {
	case fs.NArg() > 0:
		return usageError{fmt.Errorf("unexpected argument %q (the profile comes on stdin)", fs.Arg(0))}
	case *kallsyms == "":
		return usageError{errors.New("-kallsyms is required")}
	case *top < 0:
		return usageError{fmt.Errorf("-top %d: want 0 or more", *top)}
	case *to != 0 && *to < *from:
		return usageError{fmt.Errorf("-to %v is before -from %v", *to, *from)}
	}
	b, err := strconv.ParseUint(*base, 0, 64)
	if err != nil {
		return usageError{fmt.Errorf("-base %q: want an address such as 0x60000000", *base)}
	}
	f, err := os.Open(*kallsyms)
	if err != nil {
		return err
	}
	defer f.Close()
	syms, err := readKallsyms(f)
	if err != nil {
		return err
	}
	p, err := parseScript(bufio.NewReader(in), *comm, window{*from, *to}, &namer{syms: syms, exe: *exe, base: b})
	if err != nil {
		return err
	}
	if p.samples == 0 {
		return fmt.Errorf("no samples of %q in the window", *comm)
	}
	return p.write(out, *top)
}
