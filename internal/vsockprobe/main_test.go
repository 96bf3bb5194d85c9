package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// unixEnds is a side whose connections are plain unix sockets in dir
// (no CONNECT handshake): it tests the probe's protocol between two
// sides without a VM.
type unixEnds struct {
	dir        string
	self, peer uint32
}

func (u unixEnds) peerPort() uint32 { return u.peer }

func (u unixEnds) dial(port uint32) (stream, error) {
	c, err := net.Dial("unix", filepath.Join(u.dir, fmt.Sprint(port)))
	if err != nil {
		return nil, err
	}
	return c.(*net.UnixConn), nil
}

func (u unixEnds) listen() (func() (stream, error), error) {
	l, err := net.Listen("unix", filepath.Join(u.dir, fmt.Sprint(u.self)))
	if err != nil {
		return nil, err
	}
	return func() (stream, error) {
		c, err := l.Accept()
		if err != nil {
			return nil, err
		}
		return c.(*net.UnixConn), nil
	}, nil
}

// TestTwoSides: both sides finish; every normal connection's hashes
// match across the sides; the vanishing ones are reported by both ends.
func TestTwoSides(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	out.w.Reset(&buf)
	defer out.w.Reset(os.Stdout)
	var wg sync.WaitGroup
	oks := make([]bool, 2)
	for i, s := range []struct {
		side string
		e    unixEnds
	}{{"guest", unixEnds{dir, GuestPort, HostPort}}, {"host", unixEnds{dir, HostPort, GuestPort}}} {
		wg.Add(1)
		go func() { defer wg.Done(); oks[i] = run(s.side, s.e, 2, 100_000, time.Now().Add(20*time.Second)) }()
	}
	wg.Wait()
	if !oks[0] || !oks[1] {
		t.Fatalf("a side did not finish:\n%s", buf.String())
	}
	type end struct{ sent, recv, result, kind string }
	ends := map[string]end{}
	for _, l := range strings.Split(buf.String(), "\n") {
		f := map[string]string{}
		for _, kv := range strings.Fields(l) {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		if strings.HasPrefix(l, "CFG-VSOCK ") {
			ends[f["side"]+"/"+f["init"]+"/"+f["id"]] = end{f["sent_sha"], f["recv_sha"], f["result"], f["kind"]}
		}
		if strings.HasPrefix(l, "CFG-VSOCK-REFUSED") && f["result"] != "ok" {
			t.Errorf("refusal: %s", l)
		}
	}
	for _, init := range []string{"guest", "host"} {
		for id := range 3 {
			g, h := ends[fmt.Sprintf("guest/%s/%d", init, id)], ends[fmt.Sprintf("host/%s/%d", init, id)]
			if id == 2 {
				if g.kind != "vanish" || h.kind != "vanish" || (g.result != "vanished" && h.result != "vanished") {
					t.Errorf("vanish %s/%d: %+v %+v", init, id, g, h)
				}
				continue
			}
			if g.result != "ok" || h.result != "ok" || g.sent != h.recv || h.sent != g.recv {
				t.Errorf("connection %s/%d: guest %+v, host %+v", init, id, g, h)
			}
		}
	}
	if t.Failed() {
		t.Log(buf.String())
	}
}
