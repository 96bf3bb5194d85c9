package api

// The logger's and the metrics' files. Firecracker opens them when PUT
// /logger and PUT /metrics name them, and logs from then on: a path that
// cannot be opened fails the PUT, not InstanceStart. The server does the
// same: it opens them (hostfile.OpenOutput: append, 0600, no symbolic
// link, a FIFO only with a reader), holds them until Shutdown, and
// writes its request log to the logger's file from the PUT on. The VM
// that InstanceStart builds opens the paths again for its own log and
// metrics (appending to the same files).

import (
	"io"
	"log/slog"
	"os"

	"github.com/flintvm/flint/configs"
)

// logger is the request log in force.
func (s *Server) logger() *slog.Logger { return s.reqLog.Load() }

// openLog opens l's log file for PUT /logger when the body named it
// (named: opened again, as Firecracker does, so a log moved aside is
// started anew) or the server does not hold it yet (a logger from
// --log-path that a PUT changes); nil when there is nothing to open.
// Called with s.mu held (OpenOutput never blocks).
func (s *Server) openLog(l *configs.Logger, named bool) (*os.File, error) {
	if l.LogPath == "" || !named && s.logFile != nil && s.logFile.Name() == l.LogPath {
		return nil, nil
	}
	f, err := s.open(l.LogPath)
	if err != nil {
		// Firecracker's words, then the path and the problem.
		return nil, faultf("Logger error: Failed to open target file: %v", configs.OpenError("logger.log_path", l.LogPath, err))
	}
	return f, nil
}

// useLog makes l the request log, written to f (a file openLog opened,
// which replaces the one held), to the file held when f is nil, or to
// stderr without a log_path (where the VM's log goes too). Called with
// s.mu held.
func (s *Server) useLog(l *configs.Logger, f *os.File) {
	if f != nil {
		if s.logFile != nil {
			s.logFile.Close() // a request logging through it meanwhile fails quietly
		}
		s.logFile = f
	}
	var w io.Writer = s.stderr
	if l.LogPath != "" {
		w = s.logFile
	}
	s.reqLog.Store(slog.New(l.Handler(w, l.SlogLevel())))
}

// openMetrics opens m's metrics file for PUT /metrics. Called with s.mu
// held.
func (s *Server) openMetrics(m *configs.Metrics) (*os.File, error) {
	f, err := s.open(m.MetricsPath)
	if err != nil {
		return nil, faultf("Metrics error: Cannot initialize the metrics system due to bad user input: %v", configs.OpenError("metrics.metrics_path", m.MetricsPath, err))
	}
	return f, nil
}

// closeOutputs closes the files PUT opened (Shutdown).
func (s *Server) closeOutputs() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range []**os.File{&s.logFile, &s.metricsFile} {
		if *f != nil {
			(*f).Close()
			*f = nil
		}
	}
}
