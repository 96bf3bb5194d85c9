package main

import (
	"bytes"
	"strings"
	"testing"
)

// A warm-up round (left out), two rounds, a failed run, a Flint run with
// only its --timing line, and lines that are not BENCHCMD, as
// bench-command-job.sh prints them (QEMU's lines with their \r).
const cmdSample = `BENCHCMD-L1 cpus=2 kernel=6.1.0-57-amd64 qemu=QEMU_7.2
BENCHCMD-RUN config=flint-nohostroot run=0 rc=0 t0=10 t1=60
BENCHCMD-REPORT config=flint-nohostroot run=0 {"boot_to_init_seconds": 40, "command_seconds": 1, "total_seconds": 49, "verdict": {"result": "passed"}}
BENCHCMD-RUN config=flint-nohostroot run=1 rc=0 t0=100 t1=103.5
BENCHCMD-REPORT config=flint-nohostroot run=1 {  "boot_to_init_seconds": 2.5,  "command_seconds": 0.01,  "total_seconds": 3.4,  "verdict": {"result": "passed", "exit_code": 0}}
BENCHCMD-TIMING config=flint-nohostroot run=1 boot-to-init=9s command=9s total=9s
BENCHCMD-RUN config=qemu-microvm run=1 rc=0 t0=110 t1=117
BENCHCMD-GUEST config=qemu-microvm run=1 at=init up=5.0 l1=115.5` + "\r" + `
BENCHCMD-GUEST config=qemu-microvm run=1 at=modules up=5.4 l1=115.9
BENCHCMD-GUEST config=qemu-microvm run=1 at=cmd0 up=5.6 l1=116.1
BENCHCMD-GUEST config=qemu-microvm run=1 at=cmd1 up=5.7 rc=0 l1=116.2
BENCHCMD-RUN config=flint-hostroot run=1 rc=0 t0=120 t1=124
BENCHCMD-TIMING config=flint-hostroot run=1 boot-to-init=2.6s command=20ms total=3.9s
BENCHCMD-RUN config=flint-nohostroot-phases run=1 rc=0 t0=130 t1=133.8
BENCHCMD-REPORT config=flint-nohostroot-phases run=1 {"boot_to_init_seconds": 2.5, "command_seconds": 0.05, "total_seconds": 3.7, "verdict": {"result": "passed"}}
BENCHCMD-GUEST config=flint-nohostroot-phases run=1 at=cmd0 up=2.8 l1=133.3
BENCHCMD-RUN config=flint-hostroot-phases run=1 rc=121 t0=140 t1=144.5
BENCHCMD-REPORT config=flint-hostroot-phases run=1 {"boot_to_init_seconds": 2.6, "command_seconds": 0.06, "total_seconds": 4.4, "status": {"kind": "exited", "code": 0}, "verdict": {"result": "kernel-failure"}}
BENCHCMD-GUEST config=flint-hostroot-phases run=1 at=cmd0 up=3.0 l1=143.6
BENCHCMD-GUEST config=flint-hostroot-phases run=1 at=kinit up=2.1 l1=143.7
BENCHCMD-GUEST config=flint-nohostroot-phases run=1 at=kinit up=2.0
nested-host(L1): job start at 9.1s uptime
BENCHCMD-RUN config=flint-nohostroot run=2 rc=0 t0=200 t1=203.7
BENCHCMD-REPORT config=flint-nohostroot run=2 {"boot_to_init_seconds": 2.7, "command_seconds": 0.03, "total_seconds": 3.6, "verdict": {"result": "passed"}}
BENCHCMD-RUN config=qemu-microvm run=2 rc=0 t0=210 t1=217.2
BENCHCMD-GUEST config=qemu-microvm run=2 at=init up=5.2 l1=215.8
BENCHCMD-GUEST config=qemu-microvm run=2 at=modules up=5.8 l1=216.4
BENCHCMD-GUEST config=qemu-microvm run=2 at=cmd0 up=6.0 l1=216.6
BENCHCMD-GUEST config=qemu-microvm run=2 at=cmd1 up=6.2 rc=0 l1=216.8
BENCHCMD-RUN config=flint-hostroot run=2 rc=121 t0=220 t1=225
BENCHCMD-REPORT config=flint-hostroot run=2 {"boot_to_init_seconds": 2.6, "command_seconds": 0.02, "total_seconds": 4.9, "verdict": {"result": "kernel-failure"}}
BENCHCMD-ERR config=flint-hostroot run=2 | flint: kernel failure: WARNING: at fs/fuse
BENCHCMD-END
`

func cmdReportOf(t *testing.T, in string) string {
	t.Helper()
	res, err := parseCommand(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := writeCommand(&out, res); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestCommandReport(t *testing.T) {
	got := cmdReportOf(t, cmdSample)
	wantAll(t, got, []string{
		"1 run(s) failed and are left out:\n- flint-hostroot round 2: exit status 121, verdict kernel-failure\n- stderr: config=flint-hostroot run=2 | flint: kernel failure: WARNING: at fs/fuse\n",
		"| configuration | runs | exec → exit | exec → /init | /init → exit |\n|---|---|---|---|---|\n",
		// Rounds 1 and 2 (the warm-up's 50 s left out); exec → /init is the
		// report's boot_to_init, not --timing's when both are there.
		"| Flint `--no-host-root` | 2 | 3.600 (3.500-3.700) | 2.600 (2.500-2.700) | 1.000 (1.000-1.000) |\n",
		// --timing alone; the failed round 2 left out.
		"| Flint, host root (virtio-fs + overlay) | 1 | 4.000 (4.000-4.000) | 2.600 (2.600-2.600) | 1.400 (1.400-1.400) |\n",
		// exec → /init from when the init line reached L1: 5.5 and 5.8.
		"| QEMU microvm | 2 | 7.100 (7.000-7.200) | 5.650 (5.500-5.800) | 1.450 (1.400-1.500) |\n",
		// 3.6/7.1; per round 3.5/7 and 3.7/7.2.
		"| Flint `--no-host-root` | 0.51 (0.50-0.51) | 0.46 (0.45-0.47) | 0.69 (0.67-0.71) |\n",
		"| Flint, host root (virtio-fs + overlay) | 0.56 (0.57-0.57) | 0.46 (0.47-0.47) | 0.97 (0.93-0.93) |\n",
		// Flint: boot_to_init 2.5 - kinit 2.0; QEMU: 5.5 - 5.0 and 5.8 - 5.2.
		// Flint: cmd0's arrival 133.3 - t0 130 - its uptime 2.8.
		"| exec → kernel start | 0.500 (0.500-0.500) | 0.600 (0.600-0.600) | 0.550 (0.500-0.600) |\n",
		"| kernel start → /init | 2.000 (2.000-2.000) | 2.100 (2.100-2.100) | 5.100 (5.000-5.200) |\n",
		"| /init → command start (modules, mounts, consoles) | 0.800 (0.800-0.800) | 0.900 (0.900-0.900) | 0.700 (0.600-0.800) |\n",
		"| of which module loads | — | — | 0.500 (0.400-0.600) |\n",
		// Flint's from its timed runs (0.01, 0.03; host root 0.02), not the
		// phase run's 0.05.
		"| command | 0.020 (0.010-0.030) | 0.020 (0.020-0.020) | 0.150 (0.100-0.200) |\n",
		// 3.8 - (133.3 - 130) - 0.05; QEMU 7 - (5.5 + 0.7) and 7.2 - (5.8 + 1.0).
		"| command exit → VMM exit (power-off, teardown) | 0.450 (0.450-0.450) | 0.840 (0.840-0.840) | 0.600 (0.400-0.800) |\n",
		// Kept: its command exited 0.
		"1 run(s) kept although Flint's verdict failed them: the command exited 0, the times are whole (the splats are in the log):\n- flint-hostroot-phases round 1: kernel-failure\n",
	})
}

// wantAll checks that the report got has every piece of want.
func wantAll(t *testing.T, got string, want []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("report lacks %q; report:\n%s", w, got)
		}
	}
}

func TestCommandReportFloat(t *testing.T) {
	// Sums of seconds are not exact in binary; the table rounds them.
	got := cmdReportOf(t, "BENCHCMD-RUN config=qemu-microvm run=1 rc=0 t0=0.1 t1=0.3\n")
	if !strings.Contains(got, "| QEMU microvm | 1 | 0.200 (0.200-0.200) | — | — |") {
		t.Errorf("report:\n%s", got)
	}
}

func TestCommandParseIgnores(t *testing.T) {
	res, err := parseCommand(strings.NewReader(strings.Join([]string{
		"BENCHCMD-RUN run=1 config=x rc=0 t0=1 t1=2",                // fields out of order
		"BENCHCMD-RUN config= run=1 rc=0 t0=1 t1=2",                 // no config
		"BENCHCMD-RUN config=x run=-1 rc=0 t0=1 t1=2",               // negative round
		"BENCHCMD-RUN config=y run=1 rc=0 t0=2 t1=1",                // time running backwards
		"BENCHCMD-RUN config=z run=1 rc=0 t0=NaN t1=Inf",            // not finite
		"BENCHCMD-REPORT config=z run=1 {not json",                  // bad JSON
		"BENCHCMD-TIMING config=z run=1 boot-to-init=-3s",           // negative
		"BENCHCMD-GUEST config=z run=1 at= up=1",                    // no point
		"BENCHCMD-GUEST config=z run=1 at=init up=x l1=1e400",       // no numbers
		"XBENCHCMD-RUN config=w run=1 rc=0 t0=1 t1=2",               // not a BENCHCMD line
		"BENCHCMD-REPORT config=v run=1 {\"total_seconds\": 1e999}", // out of range: not JSON-decodable
	}, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	for k, r := range res.runs {
		if k.config != "y" && k.config != "z" && k.config != "v" {
			t.Errorf("a run %+v came from a malformed line", k)
		}
		if r.hasRun || r.good() || len(r.guest)+len(r.arrived) != 0 || r.bootToInit == r.bootToInit || r.total == r.total {
			t.Errorf("run %+v took a malformed value: %+v", k, r)
		}
	}
}

func TestCommandLongLine(t *testing.T) {
	if _, err := parseCommand(strings.NewReader("BENCHCMD-RUN " + strings.Repeat("x", maxLine))); err == nil {
		t.Error("a line longer than maxLine was accepted")
	}
}

// FuzzCommandReport: no input makes parseCommand or writeCommand fail other
// than with an error, and the report always has its three tables.
func FuzzCommandReport(f *testing.F) {
	f.Add(cmdSample)
	f.Add("BENCHCMD-GUEST config=qemu-microvm run=1 at=init up=1e308 l1=-1e308\nBENCHCMD-RUN config=qemu-microvm run=1 rc=0 t0=-1e308 t1=1e308\n")
	f.Fuzz(func(t *testing.T, in string) {
		res, err := parseCommand(strings.NewReader(in))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := writeCommand(&out, res); err != nil {
			t.Fatal(err)
		}
		s := out.String()
		for _, want := range []string{"| configuration | runs |", "Flint / QEMU", "| phase |"} {
			if !strings.Contains(s, want) {
				t.Fatalf("report without %q:\n%s", want, s)
			}
		}
	})
}
