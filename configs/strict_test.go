package configs

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestDuplicateKeys: a key given twice in one object is refused wherever
// it is (encoding/json alone keeps the last value, so {"mem_size_mib":
// 256, "mem_size_mib": 128} was a 128 MiB VM without a word), naming
// the key; the same key in two different objects is fine.
func TestDuplicateKeys(t *testing.T) {
	const boot = `"boot-source": {"kernel_image_path": "k"}`
	cases := []struct {
		name, doc, path string
	}{
		{"top level", `{` + boot + `, ` + boot + `}`, "boot-source"},
		{"machine", `{` + boot + `, "machine-config": {"vcpu_count": 2, "mem_size_mib": 256, "mem_size_mib": 128}}`, "machine-config.mem_size_mib"},
		{"escaped spelling", `{` + boot + `, "machine-config": {"vcpu_count": 2, "mem_size_mib": 256, "mem\u005fsize_mib": 128}}`, "machine-config.mem_size_mib"},
		{"root flag", `{` + boot + `, "drives": [{"drive_id": "a", "path_on_host": "p", "is_root_device": true, "is_root_device": false}]}`, "drives[0].is_root_device"},
		{"bucket", `{` + boot + `, "network-interfaces": [{"iface_id": "a", "host_dev_name": "t0", "rx_rate_limiter": {"ops": {"size": 1, "refill_time": 5, "size": 0}}}]}`, "network-interfaces[0].rx_rate_limiter.ops.size"},
		{"flint id", `{` + boot + `, "drives": [{"drive_id": "a", "path_on_host": "p", "is_root_device": true}], "flint": {"drives": {"a": {"packed": true}, "a": {}}}}`, "flint.drives.a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeVMConfig([]byte(tc.doc))
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Path != tc.path || !strings.Contains(fe.Msg, "duplicate field") {
				t.Fatalf("DecodeVMConfig: %v; want a duplicate field error at %s", err, tc.path)
			}
		})
	}
	bodies := map[string]func([]byte) error{
		`{"vcpu_count": 2, "mem_size_mib": 256, "vcpu_count": 1}`:         func(b []byte) error { _, err := DecodeMachineConfig(b); return err },
		`{"mem_size_mib": 256, "mem_size_mib": 512}`:                      func(b []byte) error { _, err := PatchMachineConfig(DefaultMachineConfig(), b); return err },
		`{"drive_id": "a", "path_on_host": "/x", "path_on_host": "/y"}`:   func(b []byte) error { _, err := DecodeDrivePatch(b); return err },
		`{"action_type": "FlushMetrics", "action_type": "InstanceStart"}`: func(b []byte) error { _, err := DecodeAction(b); return err },
	}
	for body, decode := range bodies {
		if err := decode([]byte(body)); err == nil || !strings.Contains(err.Error(), "duplicate field") {
			t.Errorf("%s: %v; want a duplicate field error", body, err)
		}
	}
	ok := `{` + boot + `, "network-interfaces": [{"iface_id": "a", "host_dev_name": "t0", "rx_rate_limiter": {"ops": {"size": 1, "refill_time": 5}, "bandwidth": {"size": 1, "refill_time": 5}}}]}`
	if _, err := DecodeVMConfig([]byte(ok)); err != nil {
		t.Errorf("the same keys in sibling objects: %v", err)
	}
}

// TestOnlyJSONSpaceAroundDocument: a document may be surrounded by JSON's
// white space only; a no-break space or NEL after it is not JSON.
func TestOnlyJSONSpaceAroundDocument(t *testing.T) {
	body := `{"vcpu_count": 2, "mem_size_mib": 256}`
	if _, err := DecodeMachineConfig([]byte(" \t\r\n" + body + " \t\r\n")); err != nil {
		t.Fatalf("JSON white space around a body: %v", err)
	}
	for _, junk := range []string{"\u00a0", "\u0085", "\u2028", "\v", "\f"} {
		if _, err := DecodeMachineConfig([]byte(body + junk)); err == nil {
			t.Errorf("body followed by %q accepted", junk)
		}
	}
}

// TestTAPNames: a host_dev_name (or --net tap=) the kernel refuses is an
// error naming the key, not a failed TUNSETIFF (exit 1, EINVAL) after the
// VM's memory exists; one with '%' is refused, since TUNSETIFF takes it as
// a pattern and creates a new TAP instead of using the named one.
func TestTAPNames(t *testing.T) {
	for _, name := range []string{"tap0", "t", "tap-0.1", "br_tap_123456789"[:15]} {
		if _, err := ParseNetFlag("tap=" + name); err != nil {
			t.Errorf("tap=%q: %v", name, err)
		}
	}
	for _, name := range []string{"", ".", "..", "tap:0", "tap%d", "t%", "a b", "a/b", "a\rb", "a\vb", "a\fb", "a\nb", "a\x00b", "0123456789abcdef"} {
		if _, err := ParseNetFlag("tap=" + name); err == nil || !strings.Contains(err.Error(), "interface name") && name != "" {
			t.Errorf("tap=%q: %v, want an invalid name", name, err)
		}
		q, _ := json.Marshal(name)
		doc := `{"boot-source": {"kernel_image_path": "k"}, "network-interfaces": [{"iface_id": "a", "host_dev_name": ` + string(q) + `}]}`
		var fe *FieldError
		if _, err := DecodeVMConfig([]byte(doc)); !errors.As(err, &fe) || fe.Path != "network-interfaces[0].host_dev_name" {
			t.Errorf("host_dev_name %q: %v, want an error at network-interfaces[0].host_dev_name", name, err)
		}
	}
}

// TestErrorsAreOneLine: a file name or "flint" id with a newline in it is
// quoted in the message, which stays one line (the CLI prints it as its
// one-line error; it was two).
func TestErrorsAreOneLine(t *testing.T) {
	dir := t.TempDir()
	nlDir := dir + "/log\ndir"
	if err := os.Mkdir(nlDir, 0o700); err != nil {
		t.Fatal(err)
	}
	const boot = `"boot-source": {"kernel_image_path": "k"}`
	docs := []string{
		`{` + boot + `, "flint": {"drives": {"a\nb": {}}}}`,
		`{` + boot + `, "flint": {"network-interfaces": {"a\rb": {"mtu": 1}}}}`,
		`{"boot-source": {"kernel_image_path": "` + dir + `/no\nkernel"}}`,
		`{"boot-source": {"kernel_image_path": "` + dir + `"}}`,
	}
	for _, doc := range docs {
		c, err := DecodeVMConfig([]byte(doc))
		if err == nil {
			err = c.CheckFiles()
		}
		if err == nil || strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("%s: %q, want a one-line error", doc, err)
		}
	}
	for _, err := range []error{
		(&Drive{PathOnHost: dir + "/x\ny"}).CheckFile("drives"),
		(&DrivePatch{PathOnHost: dir + "/x\ny"}).CheckFile(),
		(&Metrics{MetricsPath: dir + "/no\ndir/m"}).CheckPath("metrics"),
		(&Logger{LogPath: nlDir}).CheckPath("logger"),
	} {
		if err == nil || strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("%q, want a one-line error", err)
		}
	}
}

// TestStringsMustBeUTF8: a string value with bytes that are not UTF-8 is
// refused, naming the key; encoding/json alone turns them into U+FFFD,
// so a boot_args or exit_marker changed without a word.
func TestStringsMustBeUTF8(t *testing.T) {
	doc := "{\"boot-source\": {\"kernel_image_path\": \"k\", \"boot_args\": \"console=ttyS0 x=\xff\"}}"
	var fe *FieldError
	if _, err := DecodeVMConfig([]byte(doc)); !errors.As(err, &fe) || fe.Path != "boot-source.boot_args" || !strings.Contains(fe.Msg, "UTF-8") {
		t.Fatalf("boot_args with a 0xff byte: %v", err)
	}
	if _, err := DecodeVMConfig([]byte("{\"boot-source\": {\"kernel_image_path\": \"k\", \"boot_args\": \"é \\u00e9\"}}")); err != nil {
		t.Fatalf("UTF-8 and escapes: %v", err)
	}
}

// TestZeroMAC: 00:00:00:00:00:00 is no interface's address (the guest's
// eth_validate_addr refuses to bring such an interface up), so
// guest_mac and --net mac= refuse it.
func TestZeroMAC(t *testing.T) {
	if _, err := ParseNetFlag("tap=t0,mac=00:00:00:00:00:00"); err == nil || !strings.Contains(err.Error(), "all-zero") {
		t.Errorf("--net mac=00:00:00:00:00:00: %v", err)
	}
	doc := `{"boot-source": {"kernel_image_path": "k"}, "network-interfaces": [{"iface_id": "a", "host_dev_name": "t0", "guest_mac": "00-00-00-00-00-00"}]}`
	var fe *FieldError
	if _, err := DecodeVMConfig([]byte(doc)); !errors.As(err, &fe) || fe.Path != "network-interfaces[0].guest_mac" {
		t.Errorf("guest_mac all zero: %v", err)
	}
	if _, err := ParseNetFlag("tap=t0,mac=02:00:00:00:00:00"); err != nil {
		t.Errorf("a locally administered MAC: %v", err)
	}
}

// TestConfigIDsAsFirecracker: a config file's drive_id and iface_id are
// any string, as Firecracker's --config-file takes them (it checks ids
// only in API paths): "root-fs", "eth-0", longer than 20 or 64 bytes,
// even empty or with a line break. The "flint" section's maps find such
// ids, and messages quote them (one line). They were refused ("want 1 to
// 64 letters, digits or underscores"; a drive_id over 20 bytes "at most
// 20 bytes for flint").
func TestConfigIDsAsFirecracker(t *testing.T) {
	long := strings.Repeat("d", 100)
	for _, id := range []string{"root-fs", "rootfs.v2", strings.Repeat("x", 21), long, "", "a\nb", "é"} {
		js, _ := json.Marshal(id)
		doc := `{"boot-source": {"kernel_image_path": "k"},
			"network-interfaces": [{"iface_id": ` + string(js) + `, "host_dev_name": "tap0"}],
			"drives": [{"drive_id": ` + string(js) + `, "path_on_host": "p", "is_root_device": true}],
			"flint": {"drives": {` + string(js) + `: {"transport": "mmio"}}, "network-interfaces": {` + string(js) + `: {"transport": "mmio"}}}}`
		c, err := DecodeVMConfig([]byte(doc))
		if err != nil {
			t.Fatalf("id %q: %v", id, err)
		}
		if c.Drives[0].DriveID != id || c.NetworkInterfaces[0].IfaceID != id || c.DriveTransport(id) != TransportMMIO {
			t.Fatalf("id %q: %+v", id, c)
		}
		ns, err := c.NetInterfaces()
		if err != nil || ns[0].ID != id || ns[0].Transport != TransportMMIO {
			t.Fatalf("id %q: %+v, %v", id, ns, err)
		}
	}
	// A "flint" key naming no drive is quoted in the message.
	doc := `{"boot-source": {"kernel_image_path": "k"}, "drives": [{"drive_id": "a-b", "path_on_host": "p", "is_root_device": true}],
		"flint": {"drives": {"a\nb": {"transport": "mmio"}}}}`
	if _, err := DecodeVMConfig([]byte(doc)); err == nil || !strings.Contains(err.Error(), `flint.drives."a\nb" names no drive`) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("unknown odd id: %v", err)
	}
	// The API's rule is still there for its paths.
	if CheckPathID("p", "root-fs") == nil || CheckPathID("p", strings.Repeat("d", MaxIDLength+1)) == nil || CheckPathID("p", "") == nil ||
		CheckPathID("p", strings.Repeat("d", MaxIDLength)) != nil {
		t.Fatal("CheckPathID")
	}
}

// TestRootPartUUID: a root device's partuuid is checked when the drive is
// decoded with the rule vmm applies when it builds the VM, so PUT /drives
// refuses what InstanceStart would; another drive's is ignored.
func TestRootPartUUID(t *testing.T) {
	drive := func(root bool, partuuid string) error {
		q, _ := json.Marshal(partuuid)
		_, err := DecodeDrive([]byte(fmt.Sprintf(`{"drive_id": "d", "path_on_host": "p", "is_root_device": %t, "partuuid": %s}`, root, q)))
		return err
	}
	for _, ok := range []string{"", "0eaa91a0-01", "6a2b4c3d-1e5f-4a6b-8c7d-9e0f1a2b3c4d", "0eaa91a0-01/PARTNROFF=1"} {
		if err := drive(true, ok); err != nil {
			t.Errorf("partuuid %q: %v", ok, err)
		}
	}
	for _, bad := range []string{"a_b", "a;b", "a\rb", strings.Repeat("a", MaxPartUUID+1)} {
		if err := drive(true, bad); err == nil {
			t.Errorf("root partuuid %q accepted", bad)
		}
		if err := drive(false, bad); err != nil {
			t.Errorf("partuuid %q on a data drive (ignored): %v", bad, err)
		}
	}
}

// TestLoggerLevelWarn: Firecracker takes "warn" as well as "warning" (any
// case) and writes "Warn" in GET /vm/config; Flint refused both spellings.
func TestLoggerLevelWarn(t *testing.T) {
	for _, level := range []string{"Warn", "warn", "WARNING", "Warning"} {
		if _, err := DecodeLogger([]byte(`{"level": "` + level + `"}`)); err != nil {
			t.Errorf("level %q: %v", level, err)
		}
	}
	if _, err := DecodeLogger([]byte(`{"level": "Warnings"}`)); err == nil {
		t.Error(`level "Warnings" accepted`)
	}
}
