package api

import (
	"testing"
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
