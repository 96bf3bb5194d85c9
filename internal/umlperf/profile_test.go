package main

import (
	"bytes"
	"strings"
	"testing"
)

const testKallsyms = `0000000060001000 T _text
0000000060002000 t userspace
0000000060002400 t sigio_handler
0000000060003000 T memcpy
0000000000000000 A hidden
0000000070000000 t virtnet_poll	[virtio_net]
`

// Three samples: two of UML (one outside the window), one of iperf3.
// Frames: UML's executable at file-relative addresses (base 0x60000000),
// the host kernel, libc, a module frame perf could not map, UML's
// deleted memory file.
const testScript = `linux.uml 100.000000:
	ffffffff81000100 do_syscall_64+0x10 ([kernel.kallsyms])
	          108ef9 epoll_wait (/usr/lib/x86_64-linux-gnu/libc.so.6)
	            2410 [unknown] (/usr/bin/linux.uml)
	            2010 [unknown] (/usr/bin/linux.uml)
	               0 [unknown] ([unknown])

iperf3 100.500000:
	ffffffff81000100 do_syscall_64 ([kernel.kallsyms])

linux.uml 101.000000:
	        70000040 [unknown] ([unknown])
	            3000 [unknown] (/usr/bin/linux.uml)
	            1234 [unknown] (/dev/shm/#55 (deleted))
	            2010 [unknown] (/usr/bin/linux.uml)

linux.uml 200.000000:
	            3000 [unknown] (/usr/bin/linux.uml)
`

func testNamer(t *testing.T) *namer {
	t.Helper()
	syms, err := readKallsyms(strings.NewReader(testKallsyms))
	if err != nil {
		t.Fatal(err)
	}
	return &namer{syms: syms, exe: "linux.uml", base: 0x60000000}
}

// TestParseScript: UML's frames are named from kallsyms (executable
// frames at base plus their address, unmapped module frames as they
// are), the host kernel's keep perf's names, each name counts once per
// sample in children and the leaf in self, other commands and samples
// outside the window are left out.
func TestParseScript(t *testing.T) {
	p, err := parseScript(strings.NewReader(testScript), "linux.uml", window{99, 150}, testNamer(t))
	if err != nil {
		t.Fatal(err)
	}
	if p.samples != 2 {
		t.Fatalf("%d samples, want 2 (iperf3's and the one at 200 s are not counted)", p.samples)
	}
	for name, want := range map[string][2]int{
		"k:do_syscall_64":   {1, 1},
		"epoll_wait":        {1, 0},
		"uml:sigio_handler": {1, 0},
		"uml:userspace":     {2, 0},
		"uml:virtnet_poll":  {1, 1},
		"uml:memcpy":        {1, 0},
		"[#55]":             {1, 0},
		"[unknown]":         {1, 0},
	} {
		if got := [2]int{p.children[name], p.self[name]}; got != want {
			t.Errorf("%s: children, self = %v, want %v", name, got, want)
		}
	}
	var out bytes.Buffer
	if err := p.write(&out, 2); err != nil {
		t.Fatal(err)
	}
	want := "samples=2\nchildren%  self%  symbol\n   100.0    0.0  uml:userspace\n    50.0    0.0  [#55]\n"
	if out.String() != want {
		t.Errorf("report:\n%s\nwant:\n%s", out.String(), want)
	}
}

// TestBadInput: malformed kallsyms, headers and frames are errors naming
// the line, not panics or silent zeros.
func TestBadInput(t *testing.T) {
	if _, err := readKallsyms(strings.NewReader("zz T x\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("bad kallsyms address: %v", err)
	}
	if _, err := readKallsyms(strings.NewReader("0000000000000000 T x\n")); err == nil || !strings.Contains(err.Error(), "kptr_restrict") {
		t.Errorf("hidden kallsyms: %v", err)
	}
	n := testNamer(t)
	for _, script := range []string{"linux.uml\n", "linux.uml notatime:\n", "linux.uml 1.0:\n\tqq [unknown] (x)\n"} {
		if _, err := parseScript(strings.NewReader(script), "linux.uml", window{}, n); err == nil || !strings.Contains(err.Error(), "line ") {
			t.Errorf("%q: %v", script, err)
		}
	}
}

// TestRunFlags: bad flags are usage errors (exit status 2).
func TestRunFlags(t *testing.T) {
	for _, args := range [][]string{{}, {"-kallsyms", "k", "-top", "-1"}, {"-kallsyms", "k", "-base", "x"},
		{"-kallsyms", "k", "-from", "5", "-to", "1"}, {"-kallsyms", "k", "extra"}, {"-nope"}} {
		err := run(args, strings.NewReader(""), &bytes.Buffer{})
		if _, ok := err.(usageError); !ok {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
}

// FuzzParseScript: any input gives a profile or an error, never a panic,
// and a profile's counts stay within its samples.
func FuzzParseScript(f *testing.F) {
	f.Add(testScript)
	f.Add("linux.uml 1.5:\n\t60002000 x+0x5 (/usr/bin/linux.uml)\n\n")
	syms, err := readKallsyms(strings.NewReader(testKallsyms))
	if err != nil {
		f.Fatal(err)
	}
	n := &namer{syms: syms, exe: "linux.uml", base: 0x60000000}
	f.Fuzz(func(t *testing.T, script string) {
		p, err := parseScript(strings.NewReader(script), "linux.uml", window{}, n)
		if err != nil {
			return
		}
		for name, c := range p.children {
			if c > p.samples || p.self[name] > c {
				t.Fatalf("%s: children %d, self %d of %d samples", name, c, p.self[name], p.samples)
			}
		}
	})
}
