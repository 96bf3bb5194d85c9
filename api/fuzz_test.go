package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/flintvm/flint/configs"
)

// FuzzServeHTTP sends one request of any method, path and body to a
// server that holds a configuration, before or after InstanceStart. It
// must answer 200 with JSON, 204 with nothing, or 400 with a
// fault_message; never panic; and the configuration it keeps must stay
// consistent (ValidatePending), whatever it accepted.
func FuzzServeHTTP(f *testing.F) {
	f.Add("PUT", "/drives/rootfs", []byte(`{"drive_id": "rootfs", "path_on_host": "r.ext4", "is_root_device": true}`), false)
	f.Add("PATCH", "/drives/rootfs", []byte(`{"drive_id": "rootfs", "rate_limiter": {"ops": {"size": 0, "refill_time": 0}}}`), true)
	f.Add("PATCH", "/network-interfaces/eth0", []byte(`{"iface_id": "eth0", "tx_rate_limiter": {"bandwidth": {"size": 5, "refill_time": 9}}}`), true)
	f.Add("PATCH", "/machine-config", []byte(`{"vcpu_count": 2, "vcpu_count": 4}`), false)
	f.Add("PUT", "/network-interfaces/eth1", []byte(`{"iface_id": "eth1", "host_dev_name": "tap0"}`), false)
	f.Add("PUT", "/actions", []byte(`{"action_type": "InstanceStart"}`), false)
	f.Add("GET", "/vm/config", []byte(nil), true)
	f.Add("put", "/Drives/%2e%2e", []byte("{}\x00"), false)
	f.Fuzz(func(t *testing.T, method, path string, body []byte, started bool) {
		cfg, err := configs.DecodeVMConfig([]byte(`{"boot-source": {"kernel_image_path": "k"},
			"drives": [{"drive_id": "rootfs", "path_on_host": "r.ext4", "is_root_device": true}],
			"network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "52:54:00:00:00:01"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		s := New(Options{Controller: &fakeVM{}, Config: &cfg, Started: started})
		s.open, s.stderr = openHere, io.Discard
		defer s.Shutdown(context.Background()) // closes the files PUT opened
		r := &http.Request{Method: method, URL: &url.URL{Path: path}, Header: http.Header{},
			Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		switch out := w.Body.Bytes(); w.Code {
		case http.StatusOK:
			if !json.Valid(out) {
				t.Fatalf("%s %s: 200 with %q", method, path, out)
			}
		case http.StatusNoContent:
			if len(out) != 0 {
				t.Fatalf("%s %s: 204 with %q", method, path, out)
			}
		case http.StatusBadRequest:
			var fm struct {
				FaultMessage string `json:"fault_message"`
			}
			if json.Unmarshal(out, &fm) != nil || fm.FaultMessage == "" {
				t.Fatalf("%s %s: 400 with %q", method, path, out)
			}
			// A fault is one line (clients and logs show it so).
			if strings.ContainsAny(fm.FaultMessage, "\r\n") {
				t.Fatalf("%s %s: fault on several lines: %q", method, path, fm.FaultMessage)
			}
		default:
			t.Fatalf("%s %s: status %d %q", method, path, w.Code, w.Body)
		}
		c := s.Config()
		if err := c.ValidatePending(); err != nil {
			t.Fatalf("%s %s %q left an inconsistent configuration: %v", method, path, body, err)
		}
		if strings.HasPrefix(method, "PATCH") && w.Code == http.StatusNoContent && !started && path != "/machine-config" {
			t.Fatalf("%s %s accepted before InstanceStart", method, path)
		}
	})
}

// openHere opens only the output files a fuzz input names in the
// tests' directory (TestMain's, removed at the end): no path with a '/'.
func openHere(name string) (*os.File, error) {
	if strings.Contains(name, "/") {
		return nil, errors.New("not in the tests' directory")
	}
	return openConfined(name)
}
