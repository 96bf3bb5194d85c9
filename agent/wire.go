package agent

// The Spec's JSON keeps the command's bytes. Linux arguments, environment
// and paths are bytes, not text, but encoding/json turns every byte that is
// not UTF-8 into U+FFFD both ways; so Argv, Env and Dir are written as
// byteStrings: a plain JSON string when valid UTF-8 (the common case,
// readable), else {"b64": "BASE64"}.

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// byteString is a string that crosses JSON byte for byte.
type byteString string

// rawBytes is a byteString that is not UTF-8.
type rawBytes struct {
	B64 *[]byte `json:"b64"`
}

func (b byteString) MarshalJSON() ([]byte, error) {
	if utf8.ValidString(string(b)) {
		return json.Marshal(string(b))
	}
	raw := []byte(b)
	return json.Marshal(rawBytes{B64: &raw})
}

func (b *byteString) UnmarshalJSON(data []byte) error {
	if len(data) == 0 || data[0] != '{' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*b = byteString(s)
		return nil
	}
	var r rawBytes
	if err := strictUnmarshal(data, &r); err != nil {
		return err
	}
	if r.B64 == nil {
		return errors.New(`a non-UTF-8 string has no "b64"`)
	}
	*b = byteString(*r.B64)
	return nil
}

func strictUnmarshal(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// specFields is Spec without its methods; specWire overrides its byte
// fields (the outer field of a JSON name wins).
type specFields Spec

type specWire struct {
	*specFields
	Argv []byteString `json:"argv"`
	Env  []byteString `json:"env,omitempty"`
	Dir  byteString   `json:"dir,omitempty"`
}

// convert converts between []string and []byteString, nil staying nil.
func convert[To, From ~string](ss []From) []To {
	if ss == nil {
		return nil
	}
	out := make([]To, len(ss))
	for i, s := range ss {
		out[i] = To(s)
	}
	return out
}

// MarshalJSON writes the Spec with its byte fields as byteStrings.
func (s Spec) MarshalJSON() ([]byte, error) {
	return json.Marshal(specWire{specFields: (*specFields)(&s), Argv: convert[byteString](s.Argv), Env: convert[byteString](s.Env), Dir: byteString(s.Dir)})
}

// UnmarshalJSON reads what MarshalJSON wrote; an unknown key is an error.
func (s *Spec) UnmarshalJSON(data []byte) error {
	var fields specFields
	w := specWire{specFields: &fields}
	if err := strictUnmarshal(data, &w); err != nil {
		return err
	}
	fields.Argv, fields.Env, fields.Dir = convert[string](w.Argv), convert[string](w.Env), string(w.Dir)
	*s = Spec(fields)
	return nil
}
