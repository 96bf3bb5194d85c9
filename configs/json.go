package configs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// FieldError is a problem with one value of a config file or API body.
// Path names the field the way a user finds it in the document:
// "machine-config.vcpu_count", "drives[0].rate_limiter.bandwidth.size",
// "network-interfaces" for a whole section.
type FieldError struct {
	Path string
	Msg  string // the full message, which names Path
}

func (e *FieldError) Error() string { return e.Msg }

// fieldErrorf returns a FieldError for path whose message is
// "<path> <formatted text>" (or the text alone when path is empty).
func fieldErrorf(path, format string, a ...any) *FieldError {
	msg := fmt.Sprintf(format, a...)
	if path != "" {
		msg = path + " " + msg
	}
	return &FieldError{Path: path, Msg: msg}
}

// unsupported reports a key Flint knows but does not implement with value v.
func unsupported(path string, v any) *FieldError {
	return fieldErrorf(path, "%s is not supported by flint yet", quoteValue(v))
}

func quoteValue(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

// joinPath appends key to the path of an object.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// object is one JSON object being decoded strictly: open rejects keys the
// caller does not list, and the getters fill destinations only for keys that
// are present (null counts as absent), recording the first error. Callers
// read o.err once at the end.
type object struct {
	path   string
	fields map[string]json.RawMessage
	err    error
}

// where describes the object's location for messages about its keys.
func (o *object) where() string {
	if o.path == "" {
		return "the top level"
	}
	return o.path
}

// jsonSpace is JSON's white space (RFC 8259): the only bytes a document
// may have around its value.
const jsonSpace = " \t\r\n"

// parseObject decodes raw as a JSON object at path, without checking keys.
// A key given twice is an error (as in Firecracker, whose decoder says
// "duplicate field"): encoding/json would keep the last value silently.
func parseObject(path string, raw json.RawMessage) (*object, error) {
	raw = bytes.Trim(raw, jsonSpace)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, typeError(path, "an object", raw)
	}
	o := &object{path: path}
	if err := json.Unmarshal(raw, &o.fields); err != nil {
		return nil, syntaxError(path, raw, err)
	}
	if k, ok := repeatedKey(raw); ok {
		return nil, &FieldError{Path: joinPath(path, k),
			Msg: fmt.Sprintf("duplicate field %q at %s: give each key once", k, o.where())}
	}
	return o, nil
}

// repeatedKey returns the first key that occurs twice among the members
// of the object raw (valid JSON: encoding/json has decoded it).
func repeatedKey(raw json.RawMessage) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // '{'
		return "", false
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		k, isKey := t.(string)
		if err != nil || !isKey {
			return "", false
		}
		if seen[k] {
			return k, true
		}
		seen[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", false
		}
	}
	return "", false
}

// openObject decodes raw as a JSON object at path. Keys in unsupportedKeys
// are known (Firecracker has them) but Flint does not implement them; any
// key in neither list is unknown. Keys are checked in sorted order so the
// error is the same on every run.
func openObject(path string, raw json.RawMessage, known []string, unsupportedKeys ...string) (*object, error) {
	o, err := parseObject(path, raw)
	if err != nil {
		return nil, err
	}
	for _, k := range sortedKeys(o.fields) {
		switch {
		case slices.Contains(known, k):
		case slices.Contains(unsupportedKeys, k):
			// null and [] ask for nothing: Firecracker writes them for
			// every feature that is off (GET /vm/config, its test
			// configs), so they mean "absent".
			if isNull(o.fields[k]) || isEmptyArray(o.fields[k]) {
				continue
			}
			return nil, fieldErrorf(joinPath(path, k), "is not supported by flint yet")
		default:
			return nil, &FieldError{Path: joinPath(path, k),
				Msg: fmt.Sprintf("unknown key %q at %s (known keys: %s)", k, o.where(), strings.Join(known, ", "))}
		}
	}
	return o, nil
}

// has reports whether key is present with a non-null value.
func (o *object) has(key string) bool {
	v, ok := o.fields[key]
	return ok && !isNull(v)
}

// raw returns key's value, nil when absent or null.
func (o *object) raw(key string) json.RawMessage {
	if !o.has(key) {
		return nil
	}
	return o.fields[key]
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// isEmptyArray reports whether v is [] (with any white space inside).
func isEmptyArray(v json.RawMessage) bool { return isEmpty(v, '[', ']') }

// isEmptyObject reports whether v is {} (with any white space inside).
func isEmptyObject(v json.RawMessage) bool { return isEmpty(v, '{', '}') }

func isEmpty(v json.RawMessage, open, close byte) bool {
	v = bytes.TrimSpace(v)
	return len(v) >= 2 && v[0] == open && v[len(v)-1] == close && len(bytes.TrimSpace(v[1:len(v)-1])) == 0
}

// fail records err unless an earlier error is already recorded.
func (o *object) fail(err error) {
	if o.err == nil && err != nil {
		o.err = err
	}
}

// require records an error for the first listed key that is absent.
func (o *object) require(keys ...string) {
	for _, k := range keys {
		if !o.has(k) {
			o.fail(fieldErrorf(joinPath(o.path, k), "is required"))
			return
		}
	}
}

// str decodes a string; NUL bytes are refused (paths and command lines
// cannot hold them), and so are bytes that are not UTF-8, which
// encoding/json would silently turn into U+FFFD (a path or command line
// other than the one written).
func (o *object) str(key string, dst *string) {
	v := o.raw(key)
	if v == nil || o.err != nil {
		return
	}
	p := joinPath(o.path, key)
	if v[0] != '"' {
		o.fail(typeError(p, "a string", v))
		return
	}
	if !utf8.Valid(v) {
		o.fail(fieldErrorf(p, "is not valid UTF-8 (JSON text must be)"))
		return
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		o.fail(syntaxError(p, v, err))
		return
	}
	if strings.IndexByte(s, 0) >= 0 {
		o.fail(fieldErrorf(p, "contains a NUL byte"))
		return
	}
	*dst = s
}

// boolean decodes true or false.
func (o *object) boolean(key string, dst *bool) {
	v := o.raw(key)
	if v == nil || o.err != nil {
		return
	}
	switch string(v) {
	case "true":
		*dst = true
	case "false":
		*dst = false
	default:
		o.fail(typeError(joinPath(o.path, key), "true or false", v))
	}
}

// optBool decodes true or false into a newly allocated bool.
func (o *object) optBool(key string, dst **bool) {
	if !o.has(key) {
		return
	}
	var b bool
	o.boolean(key, &b)
	if o.err == nil {
		*dst = &b
	}
}

// integer decodes a whole number in [lo, hi]; the error names the range.
func (o *object) integer(key string, lo, hi int64, dst *int) {
	v := o.raw(key)
	if v == nil || o.err != nil {
		return
	}
	n, err := parseInteger(joinPath(o.path, key), v, lo, hi)
	if err != nil {
		o.fail(err)
		return
	}
	*dst = int(n)
}

// uint64Field decodes a whole number in [0, 2^64-1].
func (o *object) uint64Field(key string, dst *uint64) {
	v := o.raw(key)
	if v == nil || o.err != nil {
		return
	}
	p := joinPath(o.path, key)
	if !isNumber(v) {
		o.fail(typeError(p, "a non-negative integer", v))
		return
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		if _, ierr := strconv.ParseInt(string(v), 10, 64); ierr == nil || errors.Is(ierr, strconv.ErrRange) || errors.Is(err, strconv.ErrRange) {
			o.fail(fieldErrorf(p, "%s is out of range [0, %d]", v, uint64(math.MaxUint64)))
		} else {
			o.fail(fieldErrorf(p, "%s: want an integer", v))
		}
		return
	}
	*dst = n
}

// enum decodes a string that must be one of allowed.
func (o *object) enum(key string, dst *string, allowed ...string) {
	var s string
	o.str(key, &s)
	if o.err != nil || !o.has(key) {
		return
	}
	if !slices.Contains(allowed, s) {
		o.fail(fieldErrorf(joinPath(o.path, key), "%q: want one of %s", s, quoteList(allowed)))
		return
	}
	*dst = s
}

// array returns the elements of key's value, which must be a JSON array.
func (o *object) array(key string) []json.RawMessage {
	v := o.raw(key)
	if v == nil || o.err != nil {
		return nil
	}
	p := joinPath(o.path, key)
	if v[0] != '[' {
		o.fail(typeError(p, "an array", v))
		return nil
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(v, &elems); err != nil {
		o.fail(syntaxError(p, v, err))
		return nil
	}
	return elems
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = strconv.Quote(x)
	}
	return strings.Join(q, ", ")
}

func parseInteger(path string, v json.RawMessage, lo, hi int64) (int64, error) {
	if !isNumber(v) {
		return 0, typeError(path, "an integer", v)
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, fieldErrorf(path, "%s: want an integer", v)
	}
	if err != nil || n < lo || n > hi {
		return 0, fieldErrorf(path, "%s is out of range [%d, %d]", v, lo, hi)
	}
	return n, nil
}

func isNumber(v json.RawMessage) bool {
	return len(v) > 0 && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9'))
}

// jsonKind names the JSON type of a value for messages.
func jsonKind(v json.RawMessage) string {
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	if isNumber(v) {
		return "a number"
	}
	return "invalid JSON"
}

func typeError(path, want string, got json.RawMessage) *FieldError {
	if path == "" {
		return &FieldError{Msg: fmt.Sprintf("want %s at the top level, got %s", want, jsonKind(got))}
	}
	return fieldErrorf(path, "must be %s, got %s", want, jsonKind(got))
}

// syntaxError reports malformed JSON, with the line and column when
// encoding/json knows the offset.
func syntaxError(path string, doc []byte, err error) *FieldError {
	var se *json.SyntaxError
	where := "invalid JSON"
	if path != "" {
		where = path + ": invalid JSON"
	}
	if errors.As(err, &se) && se.Offset > 0 && se.Offset <= int64(len(doc)) {
		before := doc[:se.Offset]
		line := bytes.Count(before, []byte("\n")) + 1
		col := len(before) - bytes.LastIndexByte(before, '\n')
		return &FieldError{Path: path, Msg: fmt.Sprintf("%s at line %d, column %d: %v", where, line, col, se)}
	}
	return &FieldError{Path: path, Msg: fmt.Sprintf("%s: %v", where, err)}
}
