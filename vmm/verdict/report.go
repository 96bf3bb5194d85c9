package verdict

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flintvm/flint/devices/exitdev"
)

// RunInfo is what the VMM measured of a run, beside its Outcome.
type RunInfo struct {
	// Kernel is the kernel's version string (from the bzImage header).
	Kernel string
	// Command is CMD and its arguments.
	Command []string
	// Started is when Flint started the run.
	Started time.Time
	// BootToInit is the time from Flint's start to the guest's /init;
	// zero if /init was never reached.
	BootToInit time.Duration
	// CommandTime is the time from the command's start to its exit; zero
	// if it never ran.
	CommandTime time.Duration
	// Total is the whole run, exec to exit.
	Total time.Duration
	// SystemOut, if not empty, is JUnit's system-out (e.g. the kernel
	// log the user asked to keep).
	SystemOut string
}

// Report is the --report JSON document.
type Report struct {
	Kernel  string    `json:"kernel"`
	Command []string  `json:"command"`
	Started time.Time `json:"started"`
	// BootToInitSeconds and CommandSeconds are null when the guest never
	// reached /init or never ran the command.
	BootToInitSeconds *float64 `json:"boot_to_init_seconds"`
	CommandSeconds    *float64 `json:"command_seconds"`
	TotalSeconds      float64  `json:"total_seconds"`
	// Status is the command's own status; null if the agent never
	// reported.
	Status  *Status `json:"status"`
	Verdict Verdict `json:"verdict"`
	FailOn  string  `json:"fail_on"`
	// Stage is the last boot stage seen, when the command never ran.
	Stage  string        `json:"stage,omitempty"`
	Splats []ReportSplat `json:"splats"`
	// SystemOut is not in the JSON: only JUnit carries it.
	SystemOut string `json:"-"`
}

// Status is the exit device's report, spelled for JSON.
type Status struct {
	Kind       string `json:"kind"` // "exited", "signaled", "agent-failed"
	Code       *int   `json:"code,omitempty"`
	Signal     int    `json:"signal,omitempty"`
	CoreDumped bool   `json:"core_dumped,omitempty"`
	Stage      string `json:"stage,omitempty"`
	Errno      int    `json:"errno,omitempty"`
}

// ReportSplat is a splat and whether it failed the run.
type ReportSplat struct {
	Splat
	Failing bool `json:"failing"`
}

// NewReport assembles the report of a run judged as v.
func NewReport(info RunInfo, o Outcome, v Verdict) *Report {
	r := &Report{
		Kernel:       info.Kernel,
		Command:      append([]string{}, info.Command...),
		Started:      info.Started.UTC(),
		TotalSeconds: info.Total.Seconds(),
		Verdict:      v,
		FailOn:       o.FailOn.String(),
		Splats:       []ReportSplat{},
		SystemOut:    info.SystemOut,
	}
	if info.BootToInit > 0 {
		s := info.BootToInit.Seconds()
		r.BootToInitSeconds = &s
	}
	if info.CommandTime > 0 {
		s := info.CommandTime.Seconds()
		r.CommandSeconds = &s
	}
	if o.Command != nil {
		r.Status = newStatus(*o.Command)
	} else {
		r.Stage = o.Stage
	}
	for _, sp := range o.Splats {
		r.Splats = append(r.Splats, ReportSplat{Splat: sp, Failing: o.FailOn.Has(sp.Kind) || sp.Kind == Panic})
	}
	return r
}

func newStatus(c exitdev.Report) *Status {
	s := &Status{Kind: c.Kind.String()}
	switch c.Kind {
	case exitdev.KindExited:
		code := int(c.Code)
		s.Code = &code
	case exitdev.KindSignaled:
		s.Signal, s.CoreDumped = int(c.Signal), c.CoreDumped
	case exitdev.KindAgentFailed:
		s.Stage, s.Errno = c.Stage.String(), int(c.Errno)
	}
	return s
}

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// JUnit's elements: one testsuites holding one testsuite with one testcase.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes r as a JUnit XML document: testsuites > testsuite >
// one testcase named after the command, with a failure element (the
// verdict's reason and the failing splats' excerpts) unless it passed.
func WriteJUnit(w io.Writer, r *Report) error {
	secs := fmt.Sprintf("%.3f", r.TotalSeconds)
	tc := junitCase{
		Name:      commandName(r.Command),
		Classname: "flint.run",
		Time:      secs,
		SystemOut: r.SystemOut,
	}
	failures := 0
	if r.Verdict.Result != Passed {
		failures = 1
		tc.Failure = &junitFailure{
			Message: r.Verdict.Reason,
			Type:    string(r.Verdict.Result),
			Text:    failureText(r),
		}
	}
	doc := junitSuites{
		Name: "flint", Tests: 1, Failures: failures, Time: secs,
		Suites: []junitSuite{{
			Name: "flint run " + r.Kernel, Tests: 1, Failures: failures, Time: secs,
			Timestamp: r.Started.Format("2006-01-02T15:04:05"),
			Properties: []junitProperty{
				{"kernel", r.Kernel},
				{"exit_code", fmt.Sprint(r.Verdict.Code)},
				{"result", string(r.Verdict.Result)},
				{"fail_on", r.FailOn},
			},
			Cases: []junitCase{tc},
		}},
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	return nil
}

func commandName(cmd []string) string {
	if len(cmd) == 0 {
		return "(no command)"
	}
	return strings.Join(cmd, " ")
}

// failureText is the verdict's reason, then each failing splat's excerpt.
func failureText(r *Report) string {
	var b strings.Builder
	b.WriteString(r.Verdict.Reason)
	b.WriteString("\n")
	for _, sp := range r.Splats {
		if !sp.Failing {
			continue
		}
		b.WriteString("\n")
		for _, l := range sp.Excerpt {
			b.WriteString(l)
			b.WriteString("\n")
		}
		if sp.Truncated {
			b.WriteString("[...]\n")
		}
	}
	return b.String()
}

// WriteJSONFile writes r's JSON to path (see writeFile).
func WriteJSONFile(path string, r *Report) error {
	return writeFile(path, func(w io.Writer) error { return WriteJSON(w, r) })
}

// WriteJUnitFile writes r's JUnit XML to path (see writeFile).
func WriteJUnitFile(path string, r *Report) error {
	return writeFile(path, func(w io.Writer) error { return WriteJUnit(w, r) })
}

// writeFile writes through a temporary file in path's directory and
// renames it over path, so a CI server never reads half a document.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
