package verdict

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"unicode/utf8"
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
	lim := Limits{Splats: 4, ExcerptLines: 6, LineBytes: 64}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
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
		if len(got) > lim.Splats {
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
					if r < 0x20 && r != '\t' || r == 0x7f {
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
