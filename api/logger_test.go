package api

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLoggerSecondPut: a second PUT /logger changes only what it names,
// as Firecracker's logger update does: the log file and the show_* flags
// stay, the level left out is the default again, a key given replaces.
func TestLoggerSecondPut(t *testing.T) {
	s, c, _ := serve(t, Options{Controller: &fakeVM{}})
	c.ok(204, "PUT", "/logger", `{"log_path": "fc.log", "level": "Debug", "show_level": true, "show_log_origin": true}`)
	c.ok(204, "PUT", "/logger", `{"level": "Warning"}`)
	l := s.Config().Logger
	if l == nil || l.LogPath != "fc.log" || l.Level != "Warning" || !l.ShowLevel || !l.ShowLogOrigin {
		t.Fatalf("after a level-only PUT: %+v", l)
	}
	c.ok(204, "PUT", "/logger", `{"show_level": false}`)
	l = s.Config().Logger
	if l.LogPath != "fc.log" || l.Level != "" || l.ShowLevel || !l.ShowLogOrigin {
		t.Fatalf("after a show_level-only PUT: %+v", l)
	}
	c.ok(204, "PUT", "/logger", `{"log_path": null, "show_log_origin": null}`) // null: left out
	if l = s.Config().Logger; l.LogPath != "fc.log" || !l.ShowLogOrigin {
		t.Fatalf("after a PUT of nulls: %+v", l)
	}
	c.ok(204, "PUT", "/logger", `{"log_path": "other.log"}`)
	if l = s.Config().Logger; l.LogPath != "other.log" || !l.ShowLogOrigin {
		t.Fatalf("after a log_path-only PUT: %+v", l)
	}
}

// request sends one request straight to s's handler.
func request(s *Server, method, path, body string) (int, string) {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

// TestLoggerOpensAtPut: as in Firecracker, PUT /logger opens the log
// file at once and the log goes there from then on, before InstanceStart
// (it was only checked with stat, and written from InstanceStart on); a
// second PUT moves the log to the file it names, at its level and with
// its show_level.
func TestLoggerOpensAtPut(t *testing.T) {
	dir := t.TempDir()
	first, second := filepath.Join(dir, "fc.log"), filepath.Join(dir, "fc2.log")
	s := New(Options{Controller: &fakeVM{}})
	defer s.Shutdown(context.Background())
	if code, out := request(s, "PUT", "/logger", `{"log_path": "`+first+`", "level": "Info", "show_level": true}`); code != 204 {
		t.Fatalf("PUT /logger: %d %s", code, out)
	}
	request(s, "GET", "/machine-config", "")
	got, err := os.ReadFile(first)
	if err != nil {
		t.Fatalf("the log file after PUT /logger: %v", err)
	}
	for _, want := range []string{"level=INFO", "The API server received a Put request on /logger.", "Status code: 204 No Content.",
		"The API server received a Get request on /machine-config. The request was executed successfully. Status code: 200 OK."} {
		if !strings.Contains(string(got), want) {
			t.Errorf("the log has no %q:\n%s", want, got)
		}
	}
	// Warning: a failed request is logged (Firecracker logs it at
	// Error), a served one is not; without show_level, no level.
	request(s, "PUT", "/logger", `{"log_path": "`+second+`", "level": "Warning", "show_level": false}`)
	request(s, "GET", "/", "")
	request(s, "GET", "/nope", "")
	if b, _ := os.ReadFile(second); strings.Count(string(b), "\n") != 1 || !strings.Contains(string(b), "Get request on /nope. Received Error. Status code: 400 Bad Request. Message: Invalid request method and/or path: GET /nope") ||
		strings.Contains(string(b), "level=") {
		t.Errorf("the second log file at Warning without show_level:\n%s", b)
	}
	if b, _ := os.ReadFile(first); !bytes.Equal(b, got) {
		t.Errorf("the first log file changed after the log moved:\n%s", b)
	}
	// A PUT naming the same path opens it again, as Firecracker's does:
	// a log moved aside (rotated) starts anew at the path.
	if err := os.Rename(second, second+".1"); err != nil {
		t.Fatal(err)
	}
	request(s, "PUT", "/logger", `{"log_path": "`+second+`", "level": "Info"}`)
	if b, err := os.ReadFile(second); err != nil || !strings.Contains(string(b), "request on /logger.") {
		t.Errorf("the log after a PUT of the same path, the old file moved aside: %q, %v", b, err)
	}
	// Without log_path, the file stays the one held.
	request(s, "PUT", "/logger", `{"level": "Debug"}`)
	if b, _ := os.ReadFile(second); strings.Count(string(b), "request on /logger.") != 2 {
		t.Errorf("a PUT without log_path moved the log:\n%s", b)
	}
}

// TestOutputsOpenAtPut: PUT /logger and PUT /metrics open their files
// at once, as Firecracker does, so a path that cannot be opened (here a
// FIFO nobody reads, which stat accepted) fails the PUT with a 400
// naming it, in Firecracker's words, instead of InstanceStart; a metrics
// file exists from the PUT on. The files are held until Shutdown: a
// FIFO's reader sees the end of the log then.
func TestOutputsOpenAtPut(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	s := New(Options{Controller: &fakeVM{}})
	for _, tc := range []struct{ path, body, want string }{
		{"/logger", `{"log_path": "` + fifo + `"}`, "Logger error: Failed to open target file: logger.log_path: " + fifo + ": a FIFO with no reader"},
		{"/metrics", `{"metrics_path": "` + fifo + `"}`, "Metrics error: Cannot initialize the metrics system due to bad user input: metrics.metrics_path: " + fifo + ": a FIFO with no reader"},
	} {
		if code, out := request(s, "PUT", tc.path, tc.body); code != 400 || !strings.Contains(out, tc.want) {
			t.Errorf("PUT %s with a FIFO nobody reads: %d %s, want 400 %q", tc.path, code, out, tc.want)
		}
	}
	if c := s.Config(); c.Logger != nil || c.Metrics != nil {
		t.Errorf("a refused PUT changed the configuration: %+v %+v", c.Logger, c.Metrics)
	}
	metrics := filepath.Join(dir, "m.json")
	if code, out := request(s, "PUT", "/metrics", `{"metrics_path": "`+metrics+`"}`); code != 204 {
		t.Fatalf("PUT /metrics: %d %s", code, out)
	}
	if _, err := os.Stat(metrics); err != nil {
		t.Errorf("the metrics file after PUT /metrics: %v", err)
	}
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if code, out := request(s, "PUT", "/logger", `{"log_path": "`+fifo+`"}`); code != 204 {
		t.Fatalf("PUT /logger with a FIFO read: %d %s", code, out)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.SetReadDeadline(time.Now().Add(3 * time.Second))
	got, err := io.ReadAll(r)
	if err != nil || !strings.Contains(string(got), "request on /logger.") {
		t.Fatalf("the FIFO's reader got %q, %v: want the log and its end after Shutdown", got, err)
	}
}
