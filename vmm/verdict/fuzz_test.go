package verdict

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/flintvm/flint/devices/exitdev"
)

// FuzzScanner feeds arbitrary bytes, split at an arbitrary point, and
// checks that nothing panics, that memory stays within the limits, that
// the split does not change the result, and that every kept line is valid
// UTF-8 without control bytes (so JSON and XML can carry it).
func FuzzScanner(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "logs", "*.log"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(len(b)/2))
	}
	f.Add([]byte("\x1b[\x1b[<1>[1.1][T1] BUG: \xff\xfe\n"), uint16(3))
	// Both ways of reading the console: telling the kernel's lines by
	// their stamps, and printk.time=0's every line.
	stamps := Limits{Splats: 4, ExcerptLines: 6, LineBytes: 64}
	none := stamps
	none.Unstamped = true
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		for _, lim := range []Limits{stamps, none} {
			whole := NewScanner(lim, nil)
			whole.Write(data)
			whole.Flush()
			split := NewScanner(lim, nil)
			at := min(int(cut), len(data))
			split.Write(data[:at])
			split.Write(data[at:])
			split.Flush()
			got := whole.Splats()
			if !reflect.DeepEqual(got, split.Splats()) {
				t.Fatalf("split at %d changes the splats", at)
			}
			if len(got) > lim.Splats+int(numKinds) {
				t.Fatalf("%d splats kept", len(got))
			}
			for _, sp := range got {
				if len(sp.Excerpt) > lim.ExcerptLines || len(sp.Excerpt) == 0 {
					t.Fatalf("excerpt of %d lines", len(sp.Excerpt))
				}
				for _, l := range sp.Excerpt {
					// U+FFFD may replace each invalid byte: 3 bytes for 1.
					if len(l) > 3*lim.LineBytes || !utf8.ValidString(l) {
						t.Fatalf("kept line %q", l)
					}
					for _, r := range l {
						if r < 0x20 && r != '\t' || r >= 0x7f && r <= 0x9f || isBidiControl(r) {
							t.Fatalf("control byte %#x kept in %q", r, l)
						}
					}
				}
				if !whole.Seen().Has(sp.Kind) {
					t.Fatalf("kind %s kept but not seen", sp.Kind)
				}
			}
			if _, err := json.Marshal(got); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// FuzzParseFailOn checks that any value either fails with an error or
// gives a set that prints to a value parsing back to the same set.
func FuzzParseFailOn(f *testing.F) {
	for _, v := range []string{"all", "none", "panic,oops", "all,-warn", " KASAN , lockdep ", "", ",", "bogus", "-none", "none,rcu"} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		s, err := ParseFailOn(v)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if s&^All != 0 {
			t.Fatalf("%q gives bits outside All: %#x", v, s)
		}
		back, err := ParseFailOn(s.String())
		if err != nil || back != s {
			t.Fatalf("%q -> %v -> %q -> %v, %v", v, s, s.String(), back, err)
		}
	})
}

// FuzzReports writes the JSON and JUnit documents of a run whose console
// and command are arbitrary guest and user bytes: both must parse back,
// with the verdict intact.
func FuzzReports(f *testing.F) {
	f.Add([]byte("[ 1.0] Kernel panic - not syncing: \x00<]]>&\n[ 1.1] ---[ end"), "sh\x01]]>", uint8(3))
	f.Add([]byte("WARNING: \xff\xfe\"'\n"), "true", uint8(0))
	f.Fuzz(func(t *testing.T, console []byte, arg string, code uint8) {
		s := NewScanner(Limits{Splats: 4, ExcerptLines: 8, LineBytes: 128}, nil)
		s.Write(console)
		s.Flush()
		r, _ := exitdev.Decode(exitdev.Exited(code))
		o := Outcome{Command: &r, Splats: s.Splats(), FailOn: All}
		v := Judge(o)
		rep := NewReport(RunInfo{Kernel: arg, Command: []string{arg, arg}, SystemOut: arg}, o, v)
		var jb, xb bytes.Buffer
		if err := WriteJSON(&jb, rep); err != nil {
			t.Fatal(err)
		}
		var back Report
		if err := json.Unmarshal(jb.Bytes(), &back); err != nil || back.Verdict.Code != v.Code || len(back.Splats) != len(o.Splats) {
			t.Fatalf("JSON back: %v, %+v", err, back.Verdict)
		}
		if err := WriteJUnit(&xb, rep); err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Suites []struct {
				Failures int `xml:"failures,attr"`
				Cases    []struct {
					Name string `xml:"name,attr"`
				} `xml:"testcase"`
			} `xml:"testsuite"`
		}
		if err := xml.Unmarshal(xb.Bytes(), &doc); err != nil || len(doc.Suites) != 1 || len(doc.Suites[0].Cases) != 1 {
			t.Fatalf("JUnit back: %v\n%s", err, xb.Bytes())
		}
		if want := v.Result != Passed; (doc.Suites[0].Failures == 1) != want {
			t.Fatalf("failures %d for %s", doc.Suites[0].Failures, v.Result)
		}
	})
}
