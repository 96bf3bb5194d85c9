package vhostuser_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/flintvm/flint/virtio/transport/transporttest"
	"github.com/flintvm/flint/virtio/transport/vhostuser"
	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// TestDevicePanicEndsOnlyTheSession (issue 13 finding 11): a device
// method that panics under a frontend's request (here ReadConfig under
// GET_CONFIG) ends that frontend's session with the reason and stack
// logged; flint net-backend lives on and serves the next frontend.
func TestDevicePanicEndsOnlyTheSession(t *testing.T) {
	dev := transporttest.NewDevice()
	dev.PanicIn = "ReadConfig"
	log := &logBuffer{}
	srv, err := vhostuser.New(vhostuser.Config{Device: dev, Log: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	path := serveOn(t, srv)
	for i := 0; i < 2; i++ {
		for deadline := time.Now().Add(5 * time.Second); srv.Connected(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the first session did not end")
			}
		}
		f, err := vut.Dial(path)
		if err != nil {
			t.Fatalf("frontend %d: %v", i, err)
		}
		noErr(t, f.Do(vut.SetOwner, nil))
		noErr(t, f.SetU64(vut.SetProtocolFeatures, vut.ProtocolReplyAck|vut.ProtocolConfig))
		f.ReplyAck = true
		if _, err := f.GetConfig(0, 4); err == nil {
			t.Fatalf("frontend %d: GET_CONFIG answered by a device that panicked", i)
		}
		expectClosed(t, f)
		f.Close()
		log.waitLog(t, "panicked")
	}
}
