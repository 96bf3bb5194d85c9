// Command benchreport turns the UML-BENCH lines of scripts/bench-net.sh's
// runs (scripts/uml-net-case.sh --mode bench, each tagged config=NAME) into
// the benchmark's Markdown report: the failed measurements, the median
// (min-max) of every figure per configuration, and each Flint
// configuration's medians as ratios of the best peer's.
//
//	benchreport -order "flint/mergeable/indirect=on ... vec dpdk" <lines >report.md
//
// The configurations appear in -order's order; the figures are TCP Mbit/s
// at the receiver and the sender's retransmits each way, and 64-byte UDP
// packets per second received each way; when the lines carry CPU times, a
// third table gives the per-core figure (cpu.go).
//
//	benchreport -command <lines >report.md
//
// is scripts/bench-command.sh's report instead, from the BENCHCMD lines of
// scripts/bench-command-job.sh (command.go): command mode against QEMU
// microvm, end to end and by phase.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

func main() {
	order := flag.String("order", "", "the configurations to report, space-separated, in order")
	command := flag.Bool("command", false, "bench-command.sh's report from BENCHCMD lines instead")
	flag.Parse()
	if *command {
		if *order != "" || flag.NArg() != 0 {
			fmt.Fprintln(os.Stderr, "usage: benchreport -command <BENCHCMD-lines (no -order, no arguments)")
			os.Exit(2)
		}
		res, err := parseCommand(os.Stdin)
		if err == nil {
			err = writeCommand(os.Stdout, res)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchreport:", err)
			os.Exit(1)
		}
		return
	}
	if *order == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: benchreport -order \"CONFIG...\" <UML-BENCH-lines, or benchreport -command <BENCHCMD-lines")
		os.Exit(2)
	}
	res, err := parse(os.Stdin)
	if err == nil {
		err = write(os.Stdout, res, strings.Fields(*order))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}
