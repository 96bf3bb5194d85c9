// Package aml encodes ACPI Machine Language (ACPI 6.x, chapter 20) for the
// DSDT Flint generates: names, integers, strings, packages, scopes, devices
// and resource templates. It only encodes (there is no interpreter); every
// encoder validates its input and returns an error instead of emitting AML
// that an OS would misparse.
//
// A definition block body is a list of Term values; Encode concatenates
// them. Composite terms (Scope, Device, Package, buffers) compute their
// PkgLength from their encoded contents.
//
// aml imports nothing from Flint; it owns no tables (see package acpi).
package aml

import (
	"errors"
	"fmt"
	"strings"
)

// AML opcodes and prefixes used here.
const (
	opZero        = 0x00
	opOne         = 0x01
	opName        = 0x08
	opBytePrefix  = 0x0A
	opWordPrefix  = 0x0B
	opDWordPrefix = 0x0C
	opString      = 0x0D
	opQWordPrefix = 0x0E
	opScope       = 0x10
	opBuffer      = 0x11
	opPackage     = 0x12
	opExtPrefix   = 0x5B
	opExtDevice   = 0x82
	opRootChar    = 0x5C
	opParentChar  = 0x5E
	opDualName    = 0x2E
	opMultiName   = 0x2F
	opNullName    = 0x00
)

// MaxPkgLength is the largest value a PkgLength can encode (28 bits).
const MaxPkgLength = 1<<28 - 1

// ErrInvalid marks every encoding error of this package.
var ErrInvalid = errors.New("invalid AML")

func errorf(format string, args ...any) error {
	return fmt.Errorf("aml: %w: "+format, append([]any{ErrInvalid}, args...)...)
}

// Term is one AML object or statement.
type Term interface {
	// AppendAML appends the term's encoding to b.
	AppendAML(b []byte) ([]byte, error)
}

// Encode returns the concatenated encodings of terms (a TermList).
func Encode(terms ...Term) ([]byte, error) {
	return appendTerms(nil, terms)
}

func appendTerms(b []byte, terms []Term) ([]byte, error) {
	var err error
	for i, t := range terms {
		if t == nil {
			return nil, errorf("term %d is nil", i)
		}
		if b, err = t.AppendAML(b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// PkgLength encodes the PkgLength of an object whose contents after the
// PkgLength take n bytes. The encoded value counts its own bytes too, so it
// is 1 to 4 bytes long: one byte up to 63, then a lead byte holding the
// low nibble and the count of following bytes.
func PkgLength(n int) ([]byte, error) {
	if n < 0 {
		return nil, errorf("negative package length %d", n)
	}
	if n+1 <= 0x3f {
		return []byte{byte(n + 1)}, nil
	}
	for extra := 1; extra <= 3; extra++ {
		total := n + 1 + extra
		if total < 1<<(4+8*extra) {
			out := make([]byte, 1+extra)
			out[0] = byte(extra<<6) | byte(total&0x0f)
			for i := 1; i <= extra; i++ {
				out[i] = byte(total >> (4 + 8*(i-1)))
			}
			return out, nil
		}
	}
	return nil, errorf("package length %d exceeds the 28-bit PkgLength limit", n)
}

// withPkgLength appends op, a PkgLength for body, and body.
func withPkgLength(b []byte, op []byte, body []byte) ([]byte, error) {
	pl, err := PkgLength(len(body))
	if err != nil {
		return nil, err
	}
	b = append(b, op...)
	b = append(b, pl...)
	return append(b, body...), nil
}

// Int is an integer; it encodes in the shortest form (ZeroOp, OneOp, or a
// Byte/Word/DWord/QWord prefix). QWords need a definition block of revision 2
// or later.
type Int uint64

// AppendAML implements Term.
func (v Int) AppendAML(b []byte) ([]byte, error) {
	switch {
	case v == 0:
		return append(b, opZero), nil
	case v == 1:
		return append(b, opOne), nil
	case v <= 0xff:
		return append(b, opBytePrefix, byte(v)), nil
	case v <= 0xffff:
		return append(b, opWordPrefix, byte(v), byte(v>>8)), nil
	case v <= 0xffffffff:
		return appendU32(append(b, opDWordPrefix), uint32(v)), nil
	}
	b = append(b, opQWordPrefix)
	for i := 0; i < 8; i++ {
		b = append(b, byte(v>>(8*i)))
	}
	return b, nil
}

// Str is an ASCII string constant (no NUL, characters 0x01-0x7f).
type Str string

// AppendAML implements Term.
func (s Str) AppendAML(b []byte) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 || s[i] > 0x7f {
			return nil, errorf("string %q: byte %d (%#02x) is not allowed in an AML string", string(s), i, s[i])
		}
	}
	b = append(b, opString)
	b = append(b, s...)
	return append(b, 0), nil
}

// EISAID is a compressed EISA/PNP identifier such as "PNP0A03": three
// upper-case letters and four hex digits, encoded as a DWord the way the
// ASL EISAID() macro does.
type EISAID string

// Value returns the compressed 32-bit form of the identifier.
func (id EISAID) Value() (uint32, error) {
	s := string(id)
	if len(s) != 7 {
		return 0, errorf("EISA ID %q: want 3 letters and 4 hex digits", s)
	}
	var vendor uint32
	for i := 0; i < 3; i++ {
		c := s[i]
		if c < 'A' || c > 'Z' {
			return 0, errorf("EISA ID %q: %q is not an upper-case letter", s, c)
		}
		vendor = vendor<<5 | uint32(c-'@')
	}
	var product uint32
	for i := 3; i < 7; i++ {
		d, ok := hexDigit(s[i])
		if !ok {
			return 0, errorf("EISA ID %q: %q is not a hex digit", s, s[i])
		}
		product = product<<4 | uint32(d)
	}
	// Vendor and product are stored big-endian in the DWord's bytes.
	return vendor>>8 | (vendor&0xff)<<8 | (product>>8)<<16 | (product&0xff)<<24, nil
}

// AppendAML implements Term.
func (id EISAID) AppendAML(b []byte) ([]byte, error) {
	v, err := id.Value()
	if err != nil {
		return nil, err
	}
	return appendU32(append(b, opDWordPrefix), v), nil
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Package is a package of up to 255 elements (DefPackage).
type Package []Term

// AppendAML implements Term.
func (p Package) AppendAML(b []byte) ([]byte, error) {
	if len(p) > 255 {
		return nil, errorf("package has %d elements, at most 255 allowed", len(p))
	}
	body, err := appendTerms([]byte{byte(len(p))}, p)
	if err != nil {
		return nil, err
	}
	return withPkgLength(b, []byte{opPackage}, body)
}

// Buffer is a buffer object initialised with the given bytes.
type Buffer []byte

// AppendAML implements Term.
func (buf Buffer) AppendAML(b []byte) ([]byte, error) {
	body, err := Int(len(buf)).AppendAML(nil)
	if err != nil {
		return nil, err
	}
	return withPkgLength(b, []byte{opBuffer}, append(body, buf...))
}

// Name declares a named object: Name(Path, Value).
type Name struct {
	Path  string // name path, e.g. "_HID" or `\_S5`
	Value Term   // the object's value
}

// AppendAML implements Term.
func (n Name) AppendAML(b []byte) ([]byte, error) {
	ns, err := NameString(n.Path)
	if err != nil {
		return nil, err
	}
	if n.Value == nil {
		return nil, errorf("Name(%s) has no value", n.Path)
	}
	b = append(append(b, opName), ns...)
	return n.Value.AppendAML(b)
}

// Scope opens an existing namespace scope: Scope(Path) { Body }.
type Scope struct {
	Path string // scope to open, e.g. `\_SB`
	Body []Term // terms declared inside
}

// AppendAML implements Term.
func (s Scope) AppendAML(b []byte) ([]byte, error) {
	ns, err := NameString(s.Path)
	if err != nil {
		return nil, err
	}
	body, err := appendTerms(ns, s.Body)
	if err != nil {
		return nil, err
	}
	return withPkgLength(b, []byte{opScope}, body)
}

// Device declares a device object: Device(Name) { Body }.
type Device struct {
	Name string // device name (one segment or a path)
	Body []Term // named objects of the device (_HID, _UID, _CRS...)
}

// AppendAML implements Term.
func (d Device) AppendAML(b []byte) ([]byte, error) {
	ns, err := NameString(d.Name)
	if err != nil {
		return nil, err
	}
	body, err := appendTerms(ns, d.Body)
	if err != nil {
		return nil, err
	}
	return withPkgLength(b, []byte{opExtPrefix, opExtDevice}, body)
}

// Raw is AML the caller encoded itself; it is appended unchanged.
type Raw []byte

// AppendAML implements Term.
func (r Raw) AppendAML(b []byte) ([]byte, error) { return append(b, r...), nil }

// NameString encodes an ASL name path: an optional root ("\") or parent
// ("^") prefix followed by dot-separated segments of 1-4 characters
// ([A-Z_] then [A-Z0-9_]; short segments are padded with "_"). "\" alone is
// the root scope.
func NameString(path string) ([]byte, error) {
	var out []byte
	rest := path
	if strings.HasPrefix(rest, `\`) {
		out = append(out, opRootChar)
		rest = rest[1:]
	} else {
		for strings.HasPrefix(rest, "^") {
			out = append(out, opParentChar)
			rest = rest[1:]
		}
	}
	if rest == "" {
		if len(out) == 1 && out[0] == opRootChar {
			return append(out, opNullName), nil
		}
		return nil, errorf("name path %q has no name segment", path)
	}
	segs := strings.Split(rest, ".")
	if len(segs) > 255 {
		return nil, errorf("name path %q has more than 255 segments", path)
	}
	switch len(segs) {
	case 1:
	case 2:
		out = append(out, opDualName)
	default:
		out = append(out, opMultiName, byte(len(segs)))
	}
	for _, s := range segs {
		seg, err := nameSeg(s)
		if err != nil {
			return nil, fmt.Errorf("name path %q: %w", path, err)
		}
		out = append(out, seg[:]...)
	}
	return out, nil
}

func nameSeg(s string) ([4]byte, error) {
	seg := [4]byte{'_', '_', '_', '_'}
	if len(s) == 0 || len(s) > 4 {
		return seg, errorf("name segment %q must have 1 to 4 characters", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c == '_' || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9')
		if !ok {
			return seg, errorf("name segment %q: character %q not allowed at position %d", s, c, i)
		}
		seg[i] = c
	}
	return seg, nil
}

func appendU16(b []byte, v uint16) []byte { return append(b, byte(v), byte(v>>8)) }

func appendU32(b []byte, v uint32) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

func appendU64(b []byte, v uint64) []byte {
	return appendU32(appendU32(b, uint32(v)), uint32(v>>32))
}
