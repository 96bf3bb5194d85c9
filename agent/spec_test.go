package agent

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

const goodSpec = `{
	"modules": ["/flint/modules/virtio.ko", "/flint/modules/virtio_ring.ko"],
	"mounts": [{"source": "root", "target": "/flint/lower", "fstype": "virtiofs", "options": ["ro"]}],
	"root": "/flint/root",
	"after": [{"source": "share0", "target": "/flint/root/tmp/share", "fstype": "virtiofs"}],
	"interfaces": [{"mac": "52:54:00:12:34:56", "addr": "10.0.2.15/24"}],
	"argv": ["sh", "-c", "uname -r"],
	"env": ["PATH=/usr/bin:/bin", "HOME=/root"],
	"dir": "/home/user/src",
	"stdout": "/dev/hvc1",
	"stderr": "/dev/hvc2"
}`

func TestDecodeSpec(t *testing.T) {
	s, err := DecodeSpec(strings.NewReader(goodSpec))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Modules) != 2 || s.Argv[2] != "uname -r" || s.Root != "/flint/root" || s.Stdout != "/dev/hvc1" {
		t.Errorf("decoded %+v", s)
	}
}

// TestDecodeSpecRejects: each malformed Spec is an error naming the problem.
func TestDecodeSpecRejects(t *testing.T) {
	for name, tc := range map[string]struct{ old, new, want string }{
		"unknown key":     {`"root": "/flint/root"`, `"rooot": "/flint/root"`, "unknown field"},
		"no command":      {`["sh", "-c", "uname -r"]`, `[]`, "no command"},
		"empty argv0":     {`["sh", "-c", "uname -r"]`, `[""]`, "command's name is empty"},
		"NUL in argument": {`"uname -r"`, `"uname\u0000-r"`, "NUL"},
		"bad env":         {`"HOME=/root"`, `"HOME"`, "KEY=VALUE"},
		"relative module": {`"/flint/modules/virtio.ko"`, `"virtio.ko"`, "module"},
		"unclean target":  {`"/flint/lower"`, `"/flint/../lower"`, "mount target"},
		"no fstype":       {`"virtiofs"`, `""`, "no fstype"},
		"comma in option": {`["ro"]`, `["ro,nosuid"]`, "comma"},
		"relative root":   {`"root": "/flint/root"`, `"root": "flint/root"`, "root"},
		"bad opaque":      {`"options": ["ro"]`, `"options": ["ro"], "opaque": ["a/b"]`, "opaque"},
		"relative after":  {`"/flint/root/tmp/share"`, `"tmp/share"`, "mount target"},
		"relative dir":    {`"/home/user/src"`, `"src"`, "dir"},
		"relative stdout": {`"/dev/hvc1"`, `"hvc1"`, "stdout"},
		"bad MAC":         {`"52:54:00:12:34:56"`, `"52:54:00:12:34"`, "MAC"},
		"bad hex in MAC":  {`"52:54:00:12:34:56"`, `"52:54:00:12:34:5g"`, "MAC"},
		"address no mask": {`"10.0.2.15/24"`, `"10.0.2.15"`, "IPv4 CIDR"},
		"IPv6 address":    {`"10.0.2.15/24"`, `"fd00::1/64"`, "IPv4 CIDR"},
		"trailing data":   {`"stderr": "/dev/hvc2"` + "\n}", `"stderr": "/dev/hvc2"` + "\n} {}", "after the JSON"},
		"negative wait":   {`"stderr": "/dev/hvc2"`, `"stderr": "/dev/hvc2", "device_wait_ms": -1`, "device_wait_ms"},
		"not JSON":        {`{`, `[`, "agent spec"},
		"wrong type argv": {`["sh", "-c", "uname -r"]`, `"sh"`, "agent spec"},
		"huge wait":       {`"stderr": "/dev/hvc2"`, `"stderr": "/dev/hvc2", "device_wait_ms": 700000`, "device_wait_ms"},
	} {
		in := strings.Replace(goodSpec, tc.old, tc.new, 1)
		if in == goodSpec {
			t.Fatalf("%s: the replacement did not apply", name)
		}
		_, err := DecodeSpec(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, tc.want)
		}
	}
}

func TestDecodeSpecTooLarge(t *testing.T) {
	big := `{"argv": ["` + strings.Repeat("a", maxSpecSize) + `"]}`
	if _, err := DecodeSpec(strings.NewReader(big)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("error %v, want a size error", err)
	}
}

func TestMountFlags(t *testing.T) {
	flags, data, err := MountFlags([]string{"ro", "nosuid", "lowerdir=/a", "upperdir=/b"})
	if err != nil {
		t.Fatal(err)
	}
	if flags != mountFlagNames["ro"]|mountFlagNames["nosuid"] || data != "lowerdir=/a,upperdir=/b" {
		t.Errorf("flags %#x data %q", flags, data)
	}
	for _, bad := range [][]string{{""}, {"a,b"}, {"x\x00"}} {
		if _, _, err := MountFlags(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzDecodeSpec: no input panics, and what is accepted validates again.
func FuzzDecodeSpec(f *testing.F) {
	f.Add([]byte(goodSpec))
	f.Add([]byte(`{"argv":["true"]}`))
	f.Add([]byte(`{"argv":["x"],"mounts":[{"source":"a","target":"/b","fstype":"t","options":["ro","x=y"]}]}`))
	f.Add([]byte(`{"argv":["x",{"b64":"/w=="}],"env":[{"b64":"WD2A"}],"dir":{"b64":"L+k="}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSpec(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted spec fails validation: %v", err)
		}
		// What the host writes back decodes to the same Spec.
		again, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := DecodeSpec(bytes.NewReader(again))
		if err != nil || !slices.Equal(s2.Argv, s.Argv) || !slices.Equal(s2.Env, s.Env) || s2.Dir != s.Dir {
			t.Fatalf("round trip of %s: %+v, %v", again, s2, err)
		}
	})
}

// TestSpecKeepsBytes: arguments, environment and working directory reach
// the agent byte for byte, valid UTF-8 or not (a file name in Latin-1, a
// test feeding a program raw bytes); JSON alone would turn each invalid
// byte into U+FFFD.
func TestSpecKeepsBytes(t *testing.T) {
	in := Spec{Argv: []string{"printf", "\xff\xfe|%s", "caf\xe9", "ok é"}, Env: []string{"PATH=/bin", "X=\x80"}, Dir: "/home/\xe9t\xe9"}
	b, err := json.Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeSpec(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if !slices.Equal(out.Argv, in.Argv) || !slices.Equal(out.Env, in.Env) || out.Dir != in.Dir {
		t.Errorf("decoded argv %q env %q dir %q, want %q %q %q (JSON %s)", out.Argv, out.Env, out.Dir, in.Argv, in.Env, in.Dir, b)
	}
	if !strings.Contains(string(b), `"ok é"`) {
		t.Errorf("a valid UTF-8 argument should stay a plain JSON string: %s", b)
	}
	for _, bad := range []string{`{"argv":[{"b64":"eA==","x":1}]}`, `{"argv":[{"b64":"!"}]}`, `{"argv":[{}]}`} {
		if _, err := DecodeSpec(strings.NewReader(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
