package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestJobScriptDumpsBeforeTimeout runs the nested host's job script with a
// fake flint that logs a line on SIGUSR1 and never ends: a boot that runs
// flint directly gets the SIGUSR1 (its state dump) before it is killed, and
// its JOB line says it was killed by the timeout; a wrapped boot (a script
// around flint, which a SIGUSR1 would kill) gets the plain timeout.
func TestJobScriptDumpsBeforeTimeout(t *testing.T) {
	if _, err := exec.LookPath("timeout"); err != nil {
		t.Skip("no timeout command")
	}
	defer func(b, g int) { dumpBefore, dumpGrace = b, g }(dumpBefore, dumpGrace)
	dumpBefore, dumpGrace = 1, 1
	dir := t.TempDir()
	fake := filepath.Join(dir, "flint")
	script := "#!/bin/sh\ntrap 'echo FAKE-DUMP' USR1\nwhile :; do sleep 0.1; done\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	boots := []boot{
		{name: "direct", kernel: "k", cpus: 1, memMiB: 64, timeout: 4 * time.Second},
		{name: "wrapped", kernel: "k", cpus: 1, memMiB: 64, timeout: 4 * time.Second, wrap: []string{"env"}},
	}
	job := nestedJobScript(boots, map[string]string{"k": "k"})
	if !strings.Contains(job, "run_boot 'direct' 4 3 ") || !strings.Contains(job, "run_boot 'wrapped' 4 0 ") {
		t.Fatalf("job lines:\n%s", job)
	}
	job = strings.ReplaceAll(job, "'/usr/bin/flint'", shQuote(fake))
	start := time.Now()
	out, _ := exec.Command("sh", "-c", job).CombinedOutput()
	got := string(out)
	per := parseJobs(got)
	d, w := per["direct"], per["wrapped"]
	if d == nil || w == nil {
		t.Fatalf("job output has no JOB lines for both boots:\n%s", got)
	}
	if !strings.Contains(d.output, "FAKE-DUMP") || !d.timedOut {
		t.Errorf("direct boot: want a dump and a timeout (rc %d):\n%s", d.rc, d.output)
	}
	if strings.Contains(w.output, "FAKE-DUMP") || !w.timedOut {
		t.Errorf("wrapped boot: want no dump and a timeout (rc %d):\n%s", w.rc, w.output)
	}
	if el := time.Since(start); el > 15*time.Second {
		t.Errorf("the two boots took %v, want about 8 s", el)
	}
}
