package vmm

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/vmm/vmmtest"
)

// TestMetricsFile boots a tiny kernel that prints and resets: the metrics
// file gets one object, at exit, with the vCPU's port I/O exits counted.
func TestMetricsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.json")
	res, _ := bootTiny(t, vmmtest.Concat(vmmtest.Print("hi"), vmmtest.ResetViaI8042), func(c *Config) {
		c.MetricsPath = path
	})
	if res.Reason != stopReset {
		t.Fatalf("stopped with %v", res.Reason)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var objs []Metrics
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var o Metrics
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		objs = append(objs, o)
	}
	if len(objs) != 1 || len(objs[0].VCPU) != 1 || objs[0].VCPU[0].ExitIO < 3 || objs[0].UTCTimestampMs == 0 {
		t.Fatalf("metrics %+v", objs)
	}
}

func TestMetricsErrors(t *testing.T) {
	needKVM(t)
	// An unwritable metrics path is the user's input, reported before the VM exists.
	_, err := New(Config{Kernel: vmmtest.BzImage(vmmtest.Spin), CPUs: 1, MemoryMiB: 64, Console: "none",
		MetricsPath: "/nonexistent/dir/m.json"})
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v, want a ConfigError", err)
	}
	m, err := New(Config{Kernel: vmmtest.BzImage(vmmtest.Spin), CPUs: 1, MemoryMiB: 64, Console: "none"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.FlushMetrics(); !errors.Is(err, ErrNoMetrics) {
		t.Fatalf("FlushMetrics without a path: %v", err)
	}
	if err := m.SendCtrlAltDel(); err == nil {
		t.Fatal("SendCtrlAltDel without a keyboard succeeded")
	}
	// An interface with a rate limiter is valid.
	c := Config{Kernel: vmmtest.BzImage(vmmtest.Spin), CPUs: 1, MemoryMiB: 64}
	n := configs.DefaultNetInterface("tap0")
	n.RxRateLimiter = &configs.RateLimiter{Bandwidth: &configs.TokenBucket{Size: 1, RefillTime: 1}}
	c.Net = []configs.NetInterface{n}
	if err := c.Validate(); err != nil {
		t.Fatalf("a net rate limiter was refused: %v", err)
	}
}

// TestSendCtrlAltDel: with a keyboard, the keys reach the i8042 buffer.
func TestSendCtrlAltDel(t *testing.T) {
	needKVM(t)
	m, err := New(Config{Kernel: vmmtest.BzImage(vmmtest.Spin), CPUs: 1, MemoryMiB: 64, Console: "none", Keyboard: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.SendCtrlAltDel(); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	m.plat.kbc.DataPort().Read(0, b[:])
	if b[0] != 0x1d {
		t.Fatalf("first scan code %#x, want 0x1d (left Ctrl, set 1)", b[0])
	}
}

// TestRootDrive: a root drive is attached, adds root=/dev/vda to the
// command line, and shows in the metrics under its drive_id.
func TestRootDrive(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "root.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "metrics.json")
	res, out := bootTiny(t, vmmtest.Concat(vmmtest.PrintCmdline, vmmtest.ResetViaI8042), func(c *Config) {
		c.Drives = []DriveConfig{{ID: "data", Path: img, ReadOnly: true}, {ID: "root", Path: img, Root: true, CacheType: CacheWriteback}}
		c.MetricsPath = path
	})
	if res.Reason != stopReset || out != "console=ttyS0 flint-test root=/dev/vda rw" {
		t.Fatalf("stopped with %v, console %q", res.Reason, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got Metrics
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Block["root"]; !ok || len(got.Block) != 2 {
		t.Fatalf("block metrics %s", b)
	}
	// Two root drives are the user's error, before the VM exists.
	c := Config{Kernel: vmmtest.BzImage(vmmtest.Spin), CPUs: 1, MemoryMiB: 64,
		Drives: []DriveConfig{{ID: "a", Path: img, Root: true}, {ID: "b", Path: img, Root: true}}}
	if _, err := New(c); err == nil {
		t.Fatal("two root drives accepted")
	}
}

// TestQuietWithoutMetrics: a VM without a metrics file logs nothing at
// warn or above when it ends normally.
func TestQuietWithoutMetrics(t *testing.T) {
	var logs bytes.Buffer
	res, _ := bootTiny(t, vmmtest.Concat(vmmtest.PrintCmdline, vmmtest.ResetViaI8042), func(c *Config) {
		c.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	if res.Reason != stopReset || logs.Len() != 0 {
		t.Fatalf("stopped with %v; warnings:\n%s", res.Reason, logs.String())
	}
}
