package acpi

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/flintvm/flint/internal/testenv"
)

// iasl returns the path of ACPICA's iasl, skipping the test when it is not
// installed, unless CI is set: CI installs acpica-tools and must run this.
func iasl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("iasl")
	if err != nil {
		testenv.SkipOrFail(t, "iasl not installed (Debian package acpica-tools; make setup installs it)")
	}
	return p
}

var iaslComplaint = regexp.MustCompile(`(?i)warning|error|incorrect|invalid|too long|does not contain`)

// TestIASLRoundTrip disassembles every generated table with ACPICA's iasl,
// requires a clean disassembly, compiles the result again and requires the
// same bytes (apart from checksum and compiler ID, which iasl rewrites).
func TestIASLRoundTrip(t *testing.T) {
	bin := iasl(t)
	configs := map[string]Config{"full": fullConfig(4), "minimal": {CPUs: 1}, "many-cpus": {CPUs: 100, SleepControlPort: 0x600, SleepStatusPort: 0x601}}
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			tb, err := Build(cfg)
			if err != nil {
				t.Fatal(err)
			}
			p := parseAll(t, tb.Image)
			dir := t.TempDir()
			for _, sig := range []string{"DSDT", "FACP", "APIC", "XSDT"} {
				orig := p.tables[sig]
				base := strings.ToLower(sig)
				if err := os.WriteFile(filepath.Join(dir, base+".dat"), orig, 0o644); err != nil {
					t.Fatal(err)
				}
				out, err := run(dir, bin, "-d", base+".dat")
				if err != nil || iaslComplaint.MatchString(out) {
					t.Fatalf("iasl -d %s: %v\n%s", sig, err, out)
				}
				dsl, err := os.ReadFile(filepath.Join(dir, base+".dsl"))
				if err != nil {
					t.Fatal(err)
				}
				if iaslComplaint.MatchString(stripBanner(string(dsl))) {
					t.Fatalf("disassembly of %s has complaints:\n%s", sig, dsl)
				}
				args := []string{"-p", base + "_re", base + ".dsl"}
				if sig == "DSDT" {
					args = append([]string{"-oa"}, args...) // no optimisation: keep \_S5 as written
					checkDSDTText(t, string(dsl), &cfg)
				}
				if out, err := run(dir, bin, args...); err != nil {
					t.Fatalf("recompiling %s: %v\n%s", sig, err, out)
				}
				re, err := os.ReadFile(filepath.Join(dir, base+"_re.aml"))
				if err != nil {
					t.Fatal(err)
				}
				if !sameTable(orig, re) {
					t.Fatalf("%s changes through iasl -d / iasl:\n% x\n% x", sig, orig, re)
				}
			}
		})
	}
}

func run(dir, bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return stripBanner(string(out)), err
}

// stripBanner drops iasl's copyright banner and file-type chatter.
func stripBanner(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "Copyright") || strings.Contains(l, "non-ASCII") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

// sameTable compares two tables, ignoring checksum and compiler ID/revision.
func sameTable(a, b []byte) bool {
	if len(a) != len(b) || len(a) < 36 || binary.LittleEndian.Uint32(b[4:]) != uint32(len(b)) {
		return false
	}
	return bytes.Equal(a[:9], b[:9]) && bytes.Equal(a[10:28], b[10:28]) && bytes.Equal(a[36:], b[36:])
}

func checkDSDTText(t *testing.T, dsl string, c *Config) {
	t.Helper()
	want := []string{"Scope (\\_SB)", "ACPI0007"}
	if c.SleepControlPort != 0 {
		want = append(want, "Name (\\_S5, Package (0x04)")
	}
	for range c.Devices {
		want = append(want, "Interrupt (ResourceConsumer,")
	}
	if c.PCI != nil {
		want = append(want, `EisaId ("PNP0A03")`, "_PRT", "WordBusNumber (ResourceProducer", "QWordMemory (ResourceProducer")
	}
	for _, s := range c.Serial {
		_ = s
		want = append(want, `EisaId ("PNP0501")`)
	}
	for _, w := range want {
		if !strings.Contains(dsl, w) {
			t.Errorf("disassembled DSDT lacks %q", w)
		}
	}
}
