package vnethdr

import (
	"bytes"
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	h := Header{Flags: FNeedsCsum, GSOType: GSOTCPv6 | GSOECN, HdrLen: 74, GSOSize: 1428, CsumStart: 54, CsumOffset: 16, NumBuffers: 3}
	b := make([]byte, Len)
	h.Put(b)
	want := []byte{1, 0x84, 74, 0, 0x94, 0x05, 54, 0, 16, 0, 3, 0}
	if !bytes.Equal(b, want) {
		t.Fatalf("Put = % x, want % x", b, want)
	}
	got, err := Parse(b)
	if err != nil || got != h {
		t.Fatalf("Parse = %+v, %v", got, err)
	}
	if _, err := Parse(b[:Len-1]); !errors.Is(err, ErrShort) {
		t.Fatalf("short header: %v, want ErrShort", err)
	}
}
