// Command soakcheck is the verdict of scripts/soak-resources.sh (issue 13 item 6):
// it reads the soak's key=value lines on stdin (the sampler's SOAK-* lines and
// scripts/uml-net-case.sh's UML-* lines from its soak mode), prints a summary
// and SOAK-PROBLEM lines, then SOAK-VERDICT result=pass|fail, and exits 1 on a
// failed soak. The script only drives processes and reports facts; this judges.
//
//	soakcheck [-warmup 60s] [-flat 0.05] <SOAK-LINES
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

func main() {
	warmup := flag.Duration("warmup", time.Minute, "samples taken before this much of the soak are left out of the flatness check")
	flat := flag.Float64("flat", 0.05, "largest allowed growth of RSS and fd count (0.05: 5%) from the first to the last quarter after warm-up")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: soakcheck [-warmup D] [-flat F] <SOAK-LINES")
		os.Exit(2)
	}
	os.Exit(run(os.Stdin, os.Stdout, *warmup, *flat))
}

// run judges the lines on r, writes the report to w and returns the exit status.
func run(r io.Reader, w io.Writer, warmup time.Duration, flat float64) int {
	s, err := parse(r)
	if err != nil {
		fmt.Fprintf(w, "SOAK-VERDICT result=fail reason=%q\n", err.Error())
		return 1
	}
	v := judge(s, warmup, flat)
	v.write(w)
	if len(v.problems) > 0 {
		return 1
	}
	return 0
}
