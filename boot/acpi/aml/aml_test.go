package aml

import (
	"bytes"
	"errors"
	"testing"
)

// decodePkgLength parses a PkgLength, returning its value and byte count.
func decodePkgLength(b []byte) (int, int) {
	extra := int(b[0] >> 6)
	if extra == 0 {
		return int(b[0] & 0x3f), 1
	}
	v := int(b[0] & 0x0f)
	for i := 1; i <= extra; i++ {
		v |= int(b[i]) << (4 + 8*(i-1))
	}
	return v, 1 + extra
}

func TestPkgLengthBoundaries(t *testing.T) {
	cases := []struct {
		n    int
		want []byte
	}{
		{0, []byte{0x01}},
		{62, []byte{0x3f}},
		{63, []byte{0x41, 0x04}},         // 65 = 0x041
		{4093, []byte{0x4f, 0xff}},       // 4095 = 0xfff, the 2-byte maximum
		{4094, []byte{0x81, 0x00, 0x01}}, // 4097 = 0x1001
		{1<<20 - 4, []byte{0x8f, 0xff, 0xff}},
		{1<<20 - 3, []byte{0xc1, 0x00, 0x00, 0x01}},
		{MaxPkgLength - 4, []byte{0xcf, 0xff, 0xff, 0xff}},
	}
	for _, c := range cases {
		got, err := PkgLength(c.n)
		if err != nil || !bytes.Equal(got, c.want) {
			t.Errorf("PkgLength(%d) = % x, %v; want % x", c.n, got, err, c.want)
		}
	}
	for _, n := range []int{-1, MaxPkgLength - 3, MaxPkgLength} {
		if _, err := PkgLength(n); !errors.Is(err, ErrInvalid) {
			t.Errorf("PkgLength(%d) err = %v, want ErrInvalid", n, err)
		}
	}
}

func TestPkgLengthRoundTrip(t *testing.T) {
	check := func(n int) {
		b, err := PkgLength(n)
		if err != nil {
			t.Fatalf("PkgLength(%d): %v", n, err)
		}
		v, size := decodePkgLength(b)
		if size != len(b) || v != n+len(b) {
			t.Fatalf("PkgLength(%d) = % x decodes to %d (%d bytes)", n, b, v, size)
		}
		// Never longer than needed.
		if len(b) > 1 {
			shorter := n + len(b) - 1
			if len(b) == 2 && shorter <= 0x3f || len(b) > 2 && shorter < 1<<(4+8*(len(b)-2)) {
				t.Fatalf("PkgLength(%d) uses %d bytes, fewer suffice", n, len(b))
			}
		}
	}
	for n := 0; n < 70000; n++ {
		check(n)
	}
	for _, n := range []int{1<<20 - 5, 1<<20 - 4, 1<<20 - 3, 1<<20 - 2, 1 << 24, MaxPkgLength - 4} {
		check(n)
	}
}

func enc(t *testing.T, term Term) []byte {
	t.Helper()
	b, err := term.AppendAML(nil)
	if err != nil {
		t.Fatalf("%#v: %v", term, err)
	}
	return b
}

func TestIntEncoding(t *testing.T) {
	cases := []struct {
		v    uint64
		want []byte
	}{
		{0, []byte{0x00}},
		{1, []byte{0x01}},
		{2, []byte{0x0a, 0x02}},
		{0xff, []byte{0x0a, 0xff}},
		{0x100, []byte{0x0b, 0x00, 0x01}},
		{0x10000, []byte{0x0c, 0x00, 0x00, 0x01, 0x00}},
		{0xffffffff, []byte{0x0c, 0xff, 0xff, 0xff, 0xff}},
		{1 << 32, []byte{0x0e, 0, 0, 0, 0, 1, 0, 0, 0}},
	}
	for _, c := range cases {
		if got := enc(t, Int(c.v)); !bytes.Equal(got, c.want) {
			t.Errorf("Int(%#x) = % x, want % x", c.v, got, c.want)
		}
	}
}

func TestEISAID(t *testing.T) {
	for id, want := range map[string]uint32{"PNP0A03": 0x030ad041, "PNP0501": 0x0105d041, "PNP0303": 0x0303d041} {
		v, err := EISAID(id).Value()
		if err != nil || v != want {
			t.Errorf("EISAID(%s) = %#x, %v; want %#x", id, v, err, want)
		}
	}
	for _, bad := range []string{"", "PNP050", "PNP05011", "pnp0501", "PNP050G", "P1P0501"} {
		if _, err := EISAID(bad).AppendAML(nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("EISAID(%q) err = %v", bad, err)
		}
	}
}

func TestNameString(t *testing.T) {
	cases := map[string][]byte{
		"_HID":       []byte("_HID"),
		"C0":         []byte("C0__"),
		`\`:          {0x5c, 0x00},
		`\_SB`:       append([]byte{0x5c}, "_SB_"...),
		`\_SB.PCI0`:  append([]byte{0x5c, 0x2e}, "_SB_PCI0"...),
		`^^FOO`:      append([]byte{0x5e, 0x5e}, "FOO_"...),
		"A.B.C":      append([]byte{0x2f, 3}, "A___B___C___"...),
		`\_SB.P.Q.R`: append([]byte{0x5c, 0x2f, 4}, "_SB_P___Q___R___"...),
	}
	for in, want := range cases {
		got, err := NameString(in)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("NameString(%q) = % x, %v; want % x", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "^", "TOOLONG", "0ABC", "a", "A..B", `\\A`, "A.", "A-B", `^\A`} {
		if _, err := NameString(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("NameString(%q) err = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestStrAndPackageErrors(t *testing.T) {
	if got := enc(t, Str("AB")); !bytes.Equal(got, []byte{0x0d, 'A', 'B', 0}) {
		t.Errorf("Str = % x", got)
	}
	for _, s := range []string{"a\x00b", "\xff"} {
		if _, err := Str(s).AppendAML(nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("Str(%q) err = %v", s, err)
		}
	}
	big := make(Package, 256)
	for i := range big {
		big[i] = Int(0)
	}
	if _, err := big.AppendAML(nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("256-element package err = %v", err)
	}
	if got := enc(t, Package{Int(5), Int(0)}); !bytes.Equal(got, []byte{0x12, 0x05, 0x02, 0x0a, 0x05, 0x00}) {
		t.Errorf("Package = % x", got)
	}
	if _, err := Encode(Name{Path: "_HID"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Name without value err = %v", err)
	}
	if _, err := Encode(Scope{Path: `\_SB`, Body: []Term{nil}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil term err = %v", err)
	}
}

// Large bodies switch to multi-byte PkgLengths; the encoded length must
// always cover exactly the object.
func TestNestedLengths(t *testing.T) {
	for _, n := range []int{0, 10, 52, 53, 54, 60, 4000, 4085, 4086, 4090, 70000} {
		d := Device{Name: "DEV0", Body: []Term{Name{Path: "BUF0", Value: Buffer(make([]byte, n))}}}
		b := enc(t, d)
		if b[0] != 0x5b || b[1] != 0x82 {
			t.Fatalf("device opcode % x", b[:2])
		}
		v, _ := decodePkgLength(b[2:])
		if v != len(b)-2 {
			t.Fatalf("buffer %d: device PkgLength %d, object is %d bytes after the opcode", n, v, len(b)-2)
		}
	}
}

func TestResourceEncodings(t *testing.T) {
	cases := []struct {
		r    Resource
		want []byte
	}{
		{IO{Min: 0x3f8, Max: 0x3f8, Align: 1, Length: 8}, []byte{0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08}},
		{Memory32Fixed{Base: 0xd0000000, Length: 0x1000}, []byte{0x86, 0x09, 0x00, 0x01, 0, 0, 0, 0xd0, 0, 0x10, 0, 0}},
		{Interrupt{Edge: true, GSIs: []uint32{4}}, []byte{0x89, 0x06, 0x00, 0x03, 0x01, 4, 0, 0, 0}},
		{Interrupt{ActiveLow: true, Shared: true, GSIs: []uint32{16, 17}}, []byte{0x89, 0x0a, 0x00, 0x0d, 0x02, 16, 0, 0, 0, 17, 0, 0, 0}},
		{WordBusNumber{Min: 0, Max: 0xff}, []byte{0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0, 0, 0, 0, 0xff, 0, 0, 0, 0, 1}},
	}
	for _, c := range cases {
		got, err := c.r.AppendResource(nil)
		if err != nil || !bytes.Equal(got, c.want) {
			t.Errorf("%#v = % x, %v; want % x", c.r, got, err, c.want)
		}
	}
	bad := []Resource{
		IO{Min: 2, Max: 1}, Memory32Fixed{Base: 0xfffff000, Length: 0x2000}, Memory32Fixed{},
		Interrupt{}, WordIO{Min: 2, Max: 1}, DWordMemory{Min: 2, Max: 1}, QWordMemory{Min: 2, Max: 1},
	}
	for _, r := range bad {
		if _, err := r.AppendResource(nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("%#v err = %v", r, err)
		}
	}
	rt, err := ResourceTemplate{IO{Min: 0x60, Max: 0x60, Align: 1, Length: 1}}.AppendAML(nil)
	want := []byte{0x11, 0x0d, 0x0a, 0x0a, 0x47, 0x01, 0x60, 0, 0x60, 0, 1, 1, 0x79, 0}
	if err != nil || !bytes.Equal(rt, want) {
		t.Errorf("ResourceTemplate = % x, %v; want % x", rt, err, want)
	}
}
