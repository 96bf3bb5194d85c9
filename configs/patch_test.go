package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDecodeDrivePatch(t *testing.T) {
	for _, tc := range []struct {
		body, err string
		want      DrivePatch
	}{
		{`{"drive_id": "scratch", "path_on_host": "/new.img"}`, "", DrivePatch{DriveID: "scratch", PathOnHost: "/new.img"}},
		{`{"drive_id": "scratch", "rate_limiter": {"ops": {"size": 5, "refill_time": 100}}}`, "",
			DrivePatch{DriveID: "scratch", RateLimiter: &RateLimiter{Ops: &TokenBucket{Size: 5, RefillTime: 100}}}},
		{`{"drive_id": "scratch"}`, "", DrivePatch{DriveID: "scratch"}},
		// Firecracker's clients match "unknown field `KEY`".
		{`{"drive_id": "scratch", "path_on_host": "/x", "is_read_only": true}`, "unknown field `is_read_only`", DrivePatch{}},
		{`{"drive_id": "scratch", "io_engine": "Sync"}`, "unknown field `io_engine`", DrivePatch{}},
		{`{"drive_id": "scratch", "is_root_device": false}`, "unknown field `is_root_device`", DrivePatch{}},
		{`{"path_on_host": "/x"}`, "drives.drive_id is required", DrivePatch{}},
		{`{"drive_id": "a-b"}`, "drives.drive_id", DrivePatch{}},
		{`{"drive_id": "a", "path_on_host": ""}`, "drives.path_on_host must not be empty", DrivePatch{}},
		{`{"drive_id": "a", "rate_limiter": {"ops": {"size": 5, "refill_time": 0}}}`, "drives.rate_limiter.ops.refill_time", DrivePatch{}},
		{`[]`, "drives must be an object", DrivePatch{}},
	} {
		got, err := DecodeDrivePatch([]byte(tc.body))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want one containing %q", tc.body, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.body, err)
			continue
		}
		if got.DriveID != tc.want.DriveID || got.PathOnHost != tc.want.PathOnHost ||
			(got.RateLimiter == nil) != (tc.want.RateLimiter == nil) ||
			got.RateLimiter != nil && *got.RateLimiter.Ops != *tc.want.RateLimiter.Ops {
			t.Errorf("%s: got %+v, want %+v", tc.body, got, tc.want)
		}
	}
}

func TestDecodeNetworkInterfacePatch(t *testing.T) {
	p, err := DecodeNetworkInterfacePatch([]byte(`{"iface_id": "eth0", "tx_rate_limiter": {"bandwidth": {"size": 1000, "refill_time": 10}}}`))
	if err != nil || p.IfaceID != "eth0" || p.RxRateLimiter != nil || p.TxRateLimiter.Bandwidth.Size != 1000 {
		t.Fatalf("%+v %v", p, err)
	}
	for body, want := range map[string]string{
		`{"iface_id": "eth0", "host_dev_name": "tap1"}`:                       "unknown field `host_dev_name`",
		`{"iface_id": "eth0", "guest_mac": "06:00:00:00:00:01"}`:              "unknown field `guest_mac`",
		`{"rx_rate_limiter": {}}`:                                             "network-interfaces.iface_id is required",
		`{"iface_id": "eth0", "rx_rate_limiter": {"bandwidth": {"size": 1}}}`: "network-interfaces.rx_rate_limiter.bandwidth.refill_time is required",
	} {
		if _, err := DecodeNetworkInterfacePatch([]byte(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", body, err, want)
		}
	}
}

// TestRateLimiterPatch: a patch replaces the buckets it names and keeps
// the others, as Firecracker's does.
func TestRateLimiterPatch(t *testing.T) {
	bw := &TokenBucket{Size: 100, RefillTime: 10}
	ops := &TokenBucket{Size: 5, RefillTime: 20}
	cur := &RateLimiter{Bandwidth: bw, Ops: ops}
	if got := cur.Patch(nil); got != cur {
		t.Fatalf("nil patch changed %+v into %+v", cur, got)
	}
	got := cur.Patch(&RateLimiter{Ops: &TokenBucket{Size: 0}})
	if *got.Bandwidth != *bw || got.Ops.Size != 0 || cur.Ops.Size != 5 {
		t.Fatalf("ops patch: %+v %+v (current now %+v)", got.Bandwidth, got.Ops, cur.Ops)
	}
	got = (*RateLimiter)(nil).Patch(&RateLimiter{Bandwidth: bw})
	if *got.Bandwidth != *bw || got.Ops != nil {
		t.Fatalf("patch of none: %+v", got)
	}
}

func TestDrivePatchCheckFile(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "new.img")
	if err := os.WriteFile(img, make([]byte, 512), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := (&DrivePatch{PathOnHost: img}).CheckFile(); err != nil {
		t.Fatal(err)
	}
	if err := (&DrivePatch{}).CheckFile(); err != nil {
		t.Fatal(err)
	}
	// Firecracker's words, which its tests match exactly.
	want := "Error manipulating the backing file: No such file or directory (os error 2) foo.bar"
	if err := (&DrivePatch{PathOnHost: "foo.bar"}).CheckFile(); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("missing file: %v", err)
	}
	if err := (&DrivePatch{PathOnHost: dir}).CheckFile(); err == nil || !strings.Contains(err.Error(), "is a directory, not a regular file") {
		t.Fatalf("directory: %v", err)
	}
}

// FuzzDecodePatch: the PATCH decoders never panic, and what they accept
// is valid.
func FuzzDecodePatch(f *testing.F) {
	f.Add([]byte(`{"drive_id": "scratch", "path_on_host": "/x", "rate_limiter": {"bandwidth": {"size": 1, "refill_time": 1}}}`))
	f.Add([]byte(`{"iface_id": "eth0", "rx_rate_limiter": {"ops": {"size": 1, "one_time_burst": 9, "refill_time": 1}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if p, err := DecodeDrivePatch(data); err == nil {
			if CheckPathID("", p.DriveID) != nil || p.RateLimiter.validate("") != nil {
				t.Fatalf("accepted an invalid drive patch %+v", p)
			}
		}
		if p, err := DecodeNetworkInterfacePatch(data); err == nil {
			if CheckPathID("", p.IfaceID) != nil || p.RxRateLimiter.validate("") != nil || p.TxRateLimiter.validate("") != nil {
				t.Fatalf("accepted an invalid interface patch %+v", p)
			}
		}
	})
}

func TestOutputPaths(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "m.json")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		file:                               "",
		filepath.Join(dir, "new.json"):     "", // created when opened
		dir:                                "is a directory, not a file or FIFO",
		link:                               "is a symbolic link",
		filepath.Join(dir, "no", "m.json"): "No such file or directory (os error 2): its directory " + filepath.Join(dir, "no") + " does not exist",
	} {
		err := (&Metrics{MetricsPath: name}).CheckPath("metrics")
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), "metrics.metrics_path: "+name+": "+want)):
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
	if err := (&Logger{}).CheckPath("logger"); err != nil {
		t.Errorf("no log_path: %v", err)
	}
	if err := (&Logger{LogPath: dir}).CheckPath("logger"); err == nil || !strings.Contains(err.Error(), "logger.log_path: ") {
		t.Errorf("log_path a directory: %v", err)
	}
}
