package verdict

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flintvm/flint/devices/exitdev"
)

var testInfo = RunInfo{
	Kernel:      "6.1.0-27-cloud-amd64",
	Command:     []string{"sh", "-c", "echo '<&\"x\x01>'; exit 7"},
	Started:     time.Date(2026, 12, 6, 5, 30, 0, 0, time.UTC),
	BootToInit:  412 * time.Millisecond,
	CommandTime: 3 * time.Millisecond,
	Total:       610 * time.Millisecond,
}

// failedRun is a run whose kernel warned and then panicked.
func failedRun(t *testing.T) *Report {
	s := NewScanner(Limits{}, nil)
	s.Write([]byte(readLog(t, "warn.log") + readLog(t, "sysrq-panic.log")))
	o := Outcome{Splats: s.Splats(), FailOn: All &^ None.With(Warn), Stage: "command"}
	return NewReport(testInfo, o, Judge(o))
}

func TestReportJSON(t *testing.T) {
	var buf bytes.Buffer
	o := Outcome{Command: report(exitdev.Exited(7)), FailOn: All}
	if err := WriteJSON(&buf, NewReport(testInfo, o, Judge(o))); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	want := map[string]any{
		"kernel":               "6.1.0-27-cloud-amd64",
		"started":              "2026-12-06T05:30:00Z",
		"boot_to_init_seconds": 0.412,
		"command_seconds":      0.003,
		"total_seconds":        0.61,
		"fail_on":              "all",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if st := got["status"].(map[string]any); st["kind"] != "exited" || st["code"] != 7.0 {
		t.Errorf("status %v", st)
	}
	if v := got["verdict"].(map[string]any); v["result"] != "command-failed" || v["exit_code"] != 7.0 || v["reason"] == "" {
		t.Errorf("verdict %v", v)
	}
	if sp, ok := got["splats"].([]any); !ok || len(sp) != 0 {
		t.Errorf("splats %v, want an empty list", got["splats"])
	}
	if _, ok := got["stage"]; ok {
		t.Error("stage given although the command reported")
	}
	// Exit 0 keeps its code; a boot failure has null times and status.
	buf.Reset()
	o = Outcome{Command: report(exitdev.Exited(0))}
	WriteJSON(&buf, NewReport(RunInfo{}, o, Judge(o)))
	if !strings.Contains(buf.String(), `"code": 0`) {
		t.Errorf("exit 0 lost its code:\n%s", buf.String())
	}
	buf.Reset()
	o = Outcome{Stage: "kernel"}
	WriteJSON(&buf, NewReport(RunInfo{}, o, Judge(o)))
	for _, s := range []string{`"boot_to_init_seconds": null`, `"command_seconds": null`, `"status": null`, `"stage": "kernel"`, `"result": "boot-failure"`} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("boot failure report lacks %s:\n%s", s, buf.String())
		}
	}
}

func TestReportSplats(t *testing.T) {
	r := failedRun(t)
	var buf bytes.Buffer
	if err := WriteJSON(&buf, r); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Verdict.Result != KernelFailed || back.Verdict.Code != CodeKernelFailed || len(back.Splats) != 2 {
		t.Fatalf("verdict %+v, %d splats", back.Verdict, len(back.Splats))
	}
	w, p := back.Splats[0], back.Splats[1]
	if w.Failing || !p.Failing {
		t.Errorf("failing: warn %v (not counted), panic %v", w.Failing, p.Failing)
	}
	if p.Title != "Kernel panic - not syncing: sysrq triggered crash" || p.Uptime != "9.100233" || len(p.Excerpt) != 10 {
		t.Errorf("panic splat %+v", p.Splat)
	}
	if !strings.Contains(buf.String(), `"kind": "panic"`) {
		t.Error("kinds are not spelled by name")
	}
	var sp Splat
	if err := json.Unmarshal([]byte(`{"kind":"warning"}`), &sp); err == nil || !strings.Contains(err.Error(), `unknown splat kind "warning"`) {
		t.Errorf("decoding an unknown kind: %v", err)
	}
}

// junitDoc reads JUnit back with the attributes CI servers read.
type junitDoc struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    string   `xml:"tests,attr"`
	Failures string   `xml:"failures,attr"`
	Suites   []struct {
		Name     string `xml:"name,attr"`
		Tests    string `xml:"tests,attr"`
		Failures string `xml:"failures,attr"`
		Time     string `xml:"time,attr"`
		Props    []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:"value,attr"`
		} `xml:"properties>property"`
		Cases []struct {
			Name      string `xml:"name,attr"`
			Classname string `xml:"classname,attr"`
			Time      string `xml:"time,attr"`
			Failure   *struct {
				Message string `xml:"message,attr"`
				Type    string `xml:"type,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
			SystemOut *string `xml:"system-out"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func parseJUnit(t *testing.T, b []byte) junitDoc {
	t.Helper()
	// Well-formed: the tokenizer reads it to the end without error.
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		if _, err := d.Token(); err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("not well-formed: %v\n%s", err, b)
			}
			break
		}
	}
	var doc junitDoc
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if len(doc.Suites) != 1 || len(doc.Suites[0].Cases) != 1 {
		t.Fatalf("want one testsuite with one testcase:\n%s", b)
	}
	return doc
}

func TestJUnitFailing(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, failedRun(t)); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), "<?xml") {
		t.Error("no XML declaration")
	}
	doc := parseJUnit(t, buf.Bytes())
	s, c := doc.Suites[0], doc.Suites[0].Cases[0]
	if doc.Tests != "1" || doc.Failures != "1" || s.Tests != "1" || s.Failures != "1" || s.Time != "0.610" {
		t.Errorf("counts: suites %s/%s, suite %s/%s time %s", doc.Tests, doc.Failures, s.Tests, s.Failures, s.Time)
	}
	// XML cannot carry \x01 even escaped: it becomes U+FFFD.
	if c.Name != "sh -c echo '<&\"x\uFFFD>'; exit 7" {
		t.Errorf("testcase name %q", c.Name)
	}
	if c.Classname != "flint.run" || c.Time != "0.610" || c.SystemOut != nil {
		t.Errorf("testcase %q %q system-out %v", c.Classname, c.Time, c.SystemOut)
	}
	if c.Failure == nil || c.Failure.Type != "kernel-failure" || !strings.HasPrefix(c.Failure.Message, "kernel failure (panic)") {
		t.Fatalf("failure %+v", c.Failure)
	}
	if !strings.Contains(c.Failure.Text, "---[ end Kernel panic - not syncing: sysrq triggered crash ]---") {
		t.Errorf("failure text lacks the panic excerpt:\n%s", c.Failure.Text)
	}
	if strings.Contains(c.Failure.Text, "WARNING: CPU") {
		t.Error("failure text carries a splat --fail-on did not count")
	}
	props := map[string]string{}
	for _, p := range s.Props {
		props[p.Name] = p.Value
	}
	if props["kernel"] != testInfo.Kernel || props["exit_code"] != "121" || props["result"] != "kernel-failure" {
		t.Errorf("properties %v", props)
	}
}

func TestJUnitPassing(t *testing.T) {
	var buf bytes.Buffer
	o := Outcome{Command: report(exitdev.Exited(0)), FailOn: All}
	info := testInfo
	info.SystemOut = "[    0.000000] Linux version 6.1.0\n"
	if err := WriteJUnit(&buf, NewReport(info, o, Judge(o))); err != nil {
		t.Fatal(err)
	}
	doc := parseJUnit(t, buf.Bytes())
	c := doc.Suites[0].Cases[0]
	if doc.Failures != "0" || doc.Suites[0].Failures != "0" || c.Failure != nil {
		t.Errorf("a passing run has failures:\n%s", buf.String())
	}
	if c.SystemOut == nil || *c.SystemOut != info.SystemOut {
		t.Errorf("system-out %v", c.SystemOut)
	}
}

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	r := failedRun(t)
	jp, xp := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.xml")
	if err := os.WriteFile(jp, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSONFile(jp, r); err != nil {
		t.Fatal(err)
	}
	if err := WriteJUnitFile(xp, r); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(jp)
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || back.Verdict.Code != CodeKernelFailed {
		t.Fatalf("%v %+v", err, back.Verdict)
	}
	b, _ = os.ReadFile(xp)
	parseJUnit(t, b)
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("temporary files left: %v", ents)
	}
	err := WriteJSONFile(filepath.Join(dir, "missing", "r.json"), r)
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("write into a missing directory: %v", err)
	}
}
