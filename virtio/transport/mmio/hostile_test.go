package mmio

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flintvm/flint/virtio"
	"github.com/flintvm/flint/virtio/console"
	qt "github.com/flintvm/flint/virtio/queue/queuetest"
	"github.com/flintvm/flint/virtio/transport/transporttest"
)

// countHandler counts the log records at Info level and above.
type countHandler struct{ n atomic.Int64 }

func (h *countHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h *countHandler) Handle(context.Context, slog.Record) error    { h.n.Add(1); return nil }
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *countHandler) WithGroup(string) slog.Handler                { return h }

// TestBrokenQueueLoopLogIsBounded (issue 13 finding 3): a guest that
// brings a real device (virtio-console on the queue engine) up again and
// again with its transmit queue's avail.idx jumped past the ring size
// breaks the queue each time (DEVICE_NEEDS_RESET). Every log line that
// loop causes goes through the guest-error rate limiter: a few dozen
// lines for 200 cycles, not one or more per cycle.
func TestBrokenQueueLoopLogIsBounded(t *testing.T) {
	dev, err := console.New(console.Options{QueueSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	drivers := qt.MustNewSet(t,
		qt.Config{Size: 64, Features: virtio.CommonFeatures, DataSize: 4096},
		qt.Config{Size: 64, Features: virtio.CommonFeatures, DataSize: 4096})
	h := &countHandler{}
	tr, err := New(Config{Device: dev, Mem: drivers[0].Mem, Base: testBase, Log: slog.New(h), IRQ: &transporttest.Edge{}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	r := &rig{t: t, tr: tr, drivers: drivers, dev: &transporttest.Device{ID: virtio.DeviceConsole}}
	const cycles = 200
	for i := 0; i < cycles; i++ {
		r.writel(RegStatus, 0)
		r.addStatus(virtio.StatusAcknowledge | virtio.StatusDriver)
		if !r.finalize(virtio.CommonFeatures) {
			t.Fatalf("cycle %d: features refused", i)
		}
		r.setupAll()
		drivers[1].SetAvailIdx(64 + 7) // more entries than the ring holds
		r.addStatus(virtio.StatusDriverOK)
		r.writel(RegQueueNotify, 1)
		deadline := time.Now().Add(5 * time.Second)
		for !r.status().Has(virtio.StatusDeviceNeedsReset) {
			if time.Now().After(deadline) {
				t.Fatalf("cycle %d: no DEVICE_NEEDS_RESET (status %v)", i, r.status())
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	r.writel(RegStatus, 0)
	// 32 lines, then one per power of two, per kind of line.
	if n := h.n.Load(); n > 2*(32+8) {
		t.Fatalf("%d log lines for %d broken-queue cycles: the rate limiter was bypassed", n, cycles)
	}
	t.Logf("%d log lines for %d cycles", h.n.Load(), cycles)
}

// TestFailedWriteNegotiatesNothing (issue 13 finding 9): one status write
// of ACKNOWLEDGE|DRIVER|FEATURES_OK|FAILED with no features acknowledged
// must not set FEATURES_OK (no negotiation happened), and a DRIVER_OK
// after it must not activate the device: the driver gave up, only a reset
// brings it back.
func TestFailedWriteNegotiatesNothing(t *testing.T) {
	const (
		A, D, F, OK, X = virtio.StatusAcknowledge, virtio.StatusDriver, virtio.StatusFeaturesOK,
			virtio.StatusDriverOK, virtio.StatusFailed
	)
	r := newRig(t, rigOpt{})
	r.probe()
	r.writel(RegStatus, uint32(A|D|F|X))
	if s := r.status(); s.Has(F) {
		t.Fatalf("status %v: FEATURES_OK set without negotiation", s)
	}
	r.setupAll()
	r.writel(RegStatus, uint32(A|D|F|OK|X))
	r.writel(RegStatus, uint32(r.status()|OK))
	if n := r.dev.Activations(); n != 0 {
		t.Fatalf("device activated %d times after FAILED with no features (acked %#x)", n, r.dev.Acked())
	}
	// A reset and a proper bring-up still work.
	r.bringUp(virtio.CommonFeatures)
}

// TestFeaturesOKNeedsVersion1 (issue 13 finding 9): FEATURES_OK without
// VERSION_1, in one write or step by step, stays clear, and DRIVER_OK
// then never activates the device.
func TestFeaturesOKNeedsVersion1(t *testing.T) {
	const A, D, F, OK = virtio.StatusAcknowledge, virtio.StatusDriver, virtio.StatusFeaturesOK, virtio.StatusDriverOK
	for _, oneWrite := range []bool{true, false} {
		r := newRig(t, rigOpt{})
		r.probe()
		legacy := virtio.CommonFeatures &^ virtio.FeatureVersion1.Mask()
		if oneWrite {
			r.writel(RegDriverFeatures, uint32(legacy))
			r.writel(RegStatus, uint32(A|D|F))
		} else if r.finalize(legacy) {
			t.Fatal("FEATURES_OK accepted without VERSION_1")
		}
		if s := r.status(); s.Has(F) {
			t.Fatalf("one write %v: status %v", oneWrite, s)
		}
		r.setupAll()
		r.writel(RegStatus, uint32(A|D|F|OK))
		r.writel(RegStatus, uint32(r.status()|OK))
		if n := r.dev.Activations(); n != 0 {
			t.Fatalf("one write %v: activated without FEATURES_OK", oneWrite)
		}
	}
}

// TestDevicePanicIsContained (issue 13 finding 11): a device method that
// panics under a register access (a vCPU goroutine) marks the device
// DEVICE_NEEDS_RESET with the reason logged, instead of ending the
// process; the driver can reset it and the transport still answers.
func TestDevicePanicIsContained(t *testing.T) {
	for _, method := range []string{"Activate", "WriteConfig", "ReadConfig"} {
		t.Run(method, func(t *testing.T) {
			r := newRig(t, rigOpt{dev: func(d *transporttest.Device) { d.PanicIn = method }})
			r.probe()
			if !r.finalize(virtio.CommonFeatures) {
				t.Fatal("features refused")
			}
			r.setupAll()
			switch method {
			case "Activate":
				r.addStatus(virtio.StatusDriverOK)
			case "WriteConfig":
				r.tr.Write(ConfigOffset, []byte{1})
			case "ReadConfig":
				r.tr.Read(ConfigOffset, make([]byte, 1))
			}
			if s := r.status(); !s.Has(virtio.StatusDeviceNeedsReset) {
				t.Fatalf("status %v after a panic in %s", s, method)
			}
			if n := r.tr.core.Contained(); n != 1 {
				t.Fatalf("%d contained panics counted, want 1", n)
			}
			r.writel(RegStatus, 0)
			if s := r.status(); s != 0 {
				t.Fatalf("status %v after reset", s)
			}
		})
	}
}
