package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// events renders test2json events as JSON lines.
func events(t *testing.T, evs ...event) string {
	t.Helper()
	var b strings.Builder
	for _, e := range evs {
		j, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

const pkgA, pkgB = "github.com/flintvm/flint/a", "github.com/flintvm/flint/b"

// TestPrinter: without -v, passing tests are silent, a failure shows its
// result line and its logs, a skip is one line with its reason, and each
// package's text comes out whole at its result.
func TestPrinter(t *testing.T) {
	in := events(t,
		event{Action: "run", Package: pkgA, Test: "TestOK"},
		event{Action: "output", Package: pkgA, Test: "TestOK", Output: "=== RUN   TestOK\n"},
		event{Action: "output", Package: pkgA, Test: "TestOK", Output: "    a_test.go:1: chatter\n"},
		event{Action: "output", Package: pkgA, Test: "TestOK", Output: "--- PASS: TestOK (0.00s)\n"},
		event{Action: "pass", Package: pkgA, Test: "TestOK"},
		event{Action: "output", Package: pkgB, Test: "TestSkip", Output: "=== RUN   TestSkip\n"},
		event{Action: "output", Package: pkgB, Test: "TestSkip", Output: "    b_test.go:9: needs KVM: no /dev/kvm\n"},
		event{Action: "output", Package: pkgB, Test: "TestSkip", Output: "--- SKIP: TestSkip (0.00s)\n"},
		event{Action: "skip", Package: pkgB, Test: "TestSkip"},
		event{Action: "output", Package: pkgA, Test: "TestBad", Output: "=== RUN   TestBad\n"},
		event{Action: "output", Package: pkgA, Test: "TestBad", Output: "    a_test.go:5: wrong\n"},
		event{Action: "output", Package: pkgA, Test: "TestBad", Output: "--- FAIL: TestBad (0.00s)\n"},
		event{Action: "fail", Package: pkgA, Test: "TestBad"},
		event{Action: "output", Package: pkgA, Output: "FAIL\n"},
		event{Action: "output", Package: pkgA, Output: "FAIL\tgithub.com/flintvm/flint/a\t0.1s\n"},
		event{Action: "fail", Package: pkgA},
		event{Action: "output", Package: pkgB, Output: "PASS\n"},
		event{Action: "output", Package: pkgB, Output: "ok  \tgithub.com/flintvm/flint/b\t0.1s\n"},
		event{Action: "pass", Package: pkgB},
	) + "not json\n"
	var out strings.Builder
	p := newPrinter(&out, false)
	for _, l := range strings.Split(strings.TrimSuffix(in, "\n"), "\n") {
		p.line([]byte(l))
	}
	want := "--- FAIL: TestBad (0.00s)\n    a_test.go:5: wrong\nFAIL\nFAIL\tgithub.com/flintvm/flint/a\t0.1s\n" +
		"--- SKIP: TestSkip (b): needs KVM: no /dev/kvm\nok  \tgithub.com/flintvm/flint/b\t0.1s\nnot json\n"
	if out.String() != want {
		t.Errorf("printed:\n%s\nwant:\n%s", out.String(), want)
	}

	out.Reset()
	p = newPrinter(&out, true)
	for _, l := range strings.Split(strings.TrimSuffix(in, "\n"), "\n")[:4] {
		p.line([]byte(l))
	}
	if out.String() != "=== RUN   TestOK\n    a_test.go:1: chatter\n--- PASS: TestOK (0.00s)\n" {
		t.Errorf("verbose printed %q", out.String())
	}
}

// TestReport: leaves are counted on the path their test or a parent
// logged, skips are listed by reason, failures by name, lost nested hosts
// counted.
func TestReport(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("unit.json", events(t,
		event{Action: "run", Package: pkgA, Test: "TestHost"},
		event{Action: "pass", Package: pkgA, Test: "TestHost"},
		event{Action: "run", Package: pkgA, Test: "TestKVM"},
		event{Action: "output", Package: pkgA, Test: "TestKVM", Output: "    a_test.go:9: needs KVM: no /dev/kvm\n"},
		event{Action: "skip", Package: pkgA, Test: "TestKVM"},
		event{Action: "run", Package: "github.com/flintvm/flint/virtio/transport/vhostuser", Test: "TestUML"},
		event{Action: "run", Package: "github.com/flintvm/flint/virtio/transport/vhostuser", Test: "TestUML/mergeable"},
		event{Action: "pass", Package: "github.com/flintvm/flint/virtio/transport/vhostuser", Test: "TestUML/mergeable"},
		event{Action: "pass", Package: "github.com/flintvm/flint/virtio/transport/vhostuser", Test: "TestUML"},
		// A package whose tests all passed and which failed anyway (a
		// goroutine panicked after them): one failed "(package)" entry.
		event{Action: "run", Package: pkgB, Test: "TestFine"},
		event{Action: "pass", Package: pkgB, Test: "TestFine"},
		event{Action: "output", Package: pkgB, Output: "panic: late goroutine\n"},
		event{Action: "output", Package: pkgB, Output: "FAIL\tgithub.com/flintvm/flint/b\t0.1s\n"},
		event{Action: "fail", Package: pkgB},
		// A passing package's own events add nothing.
		event{Action: "output", Package: pkgA, Output: "ok\n"},
		event{Action: "pass", Package: pkgA},
	))
	e2e := "github.com/flintvm/flint/tests"
	write("e2e.json", events(t,
		event{Action: "run", Package: e2e, Test: "TestKVMPackagesNested"},
		event{Action: "output", Package: e2e, Test: "TestKVMPackagesNested", Output: "    k.go:1: flint-test-path: nested (KVM package tests)\n"},
		event{Action: "output", Package: e2e, Test: "TestKVMPackagesNested", Output: "    k.go:2: NESTED HOST LOST (1 of at most 2): crashed\n"},
		event{Action: "run", Package: e2e, Test: "TestKVMPackagesNested/kvm"},
		event{Action: "run", Package: e2e, Test: "TestKVMPackagesNested/kvm/TestA"},
		event{Action: "pass", Package: e2e, Test: "TestKVMPackagesNested/kvm/TestA"},
		event{Action: "run", Package: e2e, Test: "TestKVMPackagesNested/kvm/TestB"},
		event{Action: "output", Package: e2e, Test: "TestKVMPackagesNested/kvm/TestB", Output: "    k.go:3: failed in the nested host\n"},
		event{Action: "fail", Package: e2e, Test: "TestKVMPackagesNested/kvm/TestB"},
		event{Action: "fail", Package: e2e, Test: "TestKVMPackagesNested/kvm"},
		event{Action: "fail", Package: e2e, Test: "TestKVMPackagesNested"},
		// The harness's own test of its retries reports a "lost" fake host:
		// not a nested host this run lost.
		event{Action: "run", Package: e2e, Test: "TestNestedRetryAfterCrash"},
		event{Action: "output", Package: e2e, Test: "TestNestedRetryAfterCrash", Output: "    h.go:1: nested host lost (1 of at most 6): crashed\n"},
		event{Action: "pass", Package: e2e, Test: "TestNestedRetryAfterCrash"},
		event{Action: "run", Package: e2e, Test: "TestUMLNetBackend"},
		event{Action: "output", Package: e2e, Test: "TestUMLNetBackend", Output: "    u.go:1: flint-test-path: uml\n"},
		event{Action: "pass", Package: e2e, Test: "TestUMLNetBackend"},
	))
	write("phases", "unit ok\nfuzz-short FAILED\ne2e FAILED\n")
	write("fuzz-short.log", "fuzz: a FuzzX (10s)\n--- FAIL: FuzzX\n    x_test.go:9: boom\n")
	var out strings.Builder
	if err := report(dir, &out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{
		"phases: unit ok, fuzz-short FAILED, e2e FAILED",
		"phase fuzz-short FAILED without a failed test; the end of its output:\n  | fuzz: a FuzzX (10s)\n  | --- FAIL: FuzzX\n  |     x_test.go:9: boom\n",
		"unit   host, no VM                                        2       1        1",
		"unit   user-mode Linux (no KVM)                           1       0        0",
		"e2e    nested test host (QEMU TCG, kvm_amd in L1)         1       1        0",
		"e2e    user-mode Linux (no KVM)                           1       0        0",
		"e2e    host, no VM                                        1       0        0",
		"nested hosts lost and rerun: 1",
		"1: needs KVM: no /dev/kvm\n     unit a.TestKVM",
		"FAILED (2):\n  unit b.(package)\n      panic: late goroutine\n  e2e tests.TestKVMPackagesNested/kvm/TestB\n      failed in the nested host",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "phase e2e FAILED without") {
		t.Errorf("a phase whose failed tests are listed also printed its log tail:\n%s", s)
	}
	// The plain closing line CI reads comes last.
	if !strings.HasSuffix(s, "\ntests: 6 passed, 2 failed, 1 skipped; phases failed: fuzz-short, e2e\n") {
		t.Errorf("report does not end with the totals line:\n%s", s)
	}
}

// TestFailLinesKeepsDigest: a failure's message of several hundred
// characters (a hung boot's reason and evidence digest) reaches the
// summary whole; a longer one is cut at maxFailLine.
func TestFailLinesKeepsDigest(t *testing.T) {
	digest := "case cut off: suspected flint hang; evidence: " + strings.Repeat("vcpu0 rip 0xffffffff81000000 same; ", 20)
	long := strings.Repeat("x", 2*maxFailLine)
	r := &result{test: "TestNet/pci", output: []string{
		"    net_test.go:1: " + digest,
		"    net_test.go:2: " + long,
	}}
	got := failLines(r, 4)
	if len(got) != 2 {
		t.Fatalf("failLines: %q", got)
	}
	if !strings.Contains(got[0], strings.TrimSpace(digest)) {
		t.Errorf("digest cut: %q", got[0])
	}
	if want := maxFailLine + len("..."); len(got[1]) != want {
		t.Errorf("long line kept %d characters, want %d", len(got[1]), want)
	}
}
