package virtio_test

import (
	"testing"

	"github.com/flintvm/flint/virtio"
)

func TestCheckCounters(t *testing.T) {
	type stats struct{ A, B uint64 }
	var s stats
	var other uint64
	good := []virtio.Counter{{"a", "a", &s.A}, {"b", "x.b", &s.B}}
	if err := virtio.CheckCounters(&s, good); err != nil {
		t.Fatal(err)
	}
	for name, list := range map[string][]virtio.Counter{
		"missing field":   good[:1],
		"same field":      {{"a", "a", &s.A}, {"b", "b", &s.A}},
		"same name":       {{"a", "a", &s.A}, {"a", "b", &s.B}},
		"same metric":     {{"a", "a", &s.A}, {"b", "a", &s.B}},
		"metric in other": {{"a", "x", &s.A}, {"b", "x.b", &s.B}},
		"outside":         {{"a", "a", &s.A}, {"b", "b", &s.B}, {"c", "c", &other}},
		"empty name":      {{"", "a", &s.A}, {"b", "b", &s.B}},
	} {
		if err := virtio.CheckCounters(&s, list); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := virtio.CheckCounters(s, good); err == nil {
		t.Error("a struct value accepted")
	}
}
