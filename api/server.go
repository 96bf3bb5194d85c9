// Package api serves Firecracker's REST API on a unix socket with net/http,
// so Firecracker's clients (curl --unix-socket, SDKs) can configure and
// start a Flint VM. It holds the pending configs.VMConfig, validates every
// body with the configs package's strict decoders (the same ones the config
// file uses), and drives the VM through the Controller interface, which
// cmd/flint implements. It imports only configs: it never builds a VM.
//
// Errors are HTTP 400 with {"fault_message": "..."}; successful PUT and
// PATCH requests answer 204 with no body.
//
// A client holds little (limits.go): a request must arrive whole within
// ReadTimeout, a keep-alive connection closes after IdleTimeout without a
// request, at most MaxConns connections are open at once (others wait in
// the backlog), bodies are at most MaxBodySize bytes. The socket is its
// owner's only from the moment it exists.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/internal/hostfile"
)

// Controller is the running side of the API: cmd/flint creates and runs the
// VM. Its errors become 400 responses.
type Controller interface {
	// Start creates the VM described by cfg (already validated) and starts
	// it running; it returns once the VM runs or failed to build.
	Start(cfg configs.VMConfig) error
	// SendCtrlAltDel asks the guest to reboot (press Ctrl-Alt-Del).
	SendCtrlAltDel() error
	// FlushMetrics writes a metrics object now.
	FlushMetrics() error
}

// MaxBodySize bounds request bodies (Firecracker's payload limit).
const MaxBodySize = 51200

// Instance states reported by GET /.
const (
	StateNotStarted = "Not started"
	StateRunning    = "Running"
)

// InstanceInfo is GET /'s answer.
type InstanceInfo struct {
	ID         string `json:"id"`
	State      string `json:"state"`
	VMMVersion string `json:"vmm_version"`
	AppName    string `json:"app_name"`
}

// Options configures a Server.
type Options struct {
	Controller Controller
	// ID is the instance id GET / reports (default "anonymous-instance").
	ID string
	// Version is the VMM version GET / reports.
	Version string
	// Config is the initial configuration (from --config), nil for none.
	Config *configs.VMConfig
	// Started says the VM already runs (booted from --config): only
	// post-boot calls are accepted.
	Started bool
	// Log receives one line per request (Info, or Error for a refused
	// one, in Firecracker's words) until a PUT /logger replaces it; nil
	// discards.
	Log *slog.Logger
	// Limits bounds clients' time and connections (zero: DefaultLimits).
	Limits Limits
	// MaxBodySize bounds request bodies (0: MaxBodySize; Firecracker's
	// --http-api-max-payload-size).
	MaxBodySize int64
}

// Server is the API. Create it with New, then Serve a listener from Listen.
type Server struct {
	ctrl    Controller
	info    InstanceInfo
	http    *http.Server
	mu      sync.Mutex
	cfg     configs.VMConfig // the pending (then running) configuration
	started bool
	limits  Limits
	maxBody int64

	// The request log and the files PUT /logger and PUT /metrics
	// opened (output.go); the files are guarded by mu.
	reqLog      atomic.Pointer[slog.Logger]
	open        func(path string) (*os.File, error) // hostfile.OpenOutput
	stderr      io.Writer                           // the log without a log_path
	logFile     *os.File
	metricsFile *os.File

	// Connections that have not sent a request yet: net/http's Shutdown
	// waits 5 s for those, so Shutdown closes them itself.
	connMu   sync.Mutex
	fresh    map[net.Conn]struct{}
	shutting bool
}

// New returns a server for opts.
func New(opts Options) *Server {
	s := &Server{ctrl: opts.Controller, started: opts.Started, open: hostfile.OpenOutput, stderr: os.Stderr,
		info: InstanceInfo{ID: opts.ID, VMMVersion: opts.Version, AppName: "Flint"}}
	if s.info.ID == "" {
		s.info.ID = "anonymous-instance"
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s.reqLog.Store(log)
	s.cfg.MachineConfig = configs.DefaultMachineConfig()
	if opts.Config != nil {
		s.cfg = *opts.Config
	}
	s.fresh = map[net.Conn]struct{}{}
	s.limits = opts.Limits.orDefault()
	s.maxBody = opts.MaxBodySize
	if s.maxBody <= 0 {
		s.maxBody = MaxBodySize
	}
	s.http = &http.Server{Handler: s, ReadHeaderTimeout: s.limits.ReadHeaderTimeout,
		ReadTimeout: s.limits.ReadTimeout, WriteTimeout: s.limits.WriteTimeout,
		IdleTimeout: s.limits.IdleTimeout, MaxHeaderBytes: s.limits.MaxHeaderBytes,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug), ConnState: s.connState}
	return s
}

// connState tracks the connections without a request; after Shutdown
// began, a new one is closed at once.
func (s *Server) connState(c net.Conn, st http.ConnState) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	switch {
	case st == http.StateNew && s.shutting:
		c.Close()
	case st == http.StateNew:
		s.fresh[c] = struct{}{}
	default:
		delete(s.fresh, c)
	}
}

// Serve answers requests on l until Shutdown, with at most
// Limits.MaxConns connections open at once; it returns nil after
// Shutdown.
func (s *Server) Serve(l net.Listener) error {
	err := s.http.Serve(newLimitListener(l, s.limits.MaxConns))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops serving: it closes the listener (removing a socket from
// Listen) and connections that have not sent a request, waits for
// requests in flight until ctx ends, and closes the log and metrics
// files PUT opened.
func (s *Server) Shutdown(ctx context.Context) error {
	s.connMu.Lock()
	s.shutting = true
	for c := range s.fresh {
		c.Close() // no request of its own: nothing to finish
	}
	clear(s.fresh)
	s.connMu.Unlock()
	err := s.http.Shutdown(ctx)
	s.closeOutputs()
	return err
}

// Config returns a copy of the current configuration.
func (s *Server) Config() configs.VMConfig {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// fault is a 400 answer.
type fault struct{ msg string }

func (f fault) Error() string { return f.msg }

func faultf(format string, a ...any) error { return fault{fmt.Sprintf(format, a...)} }

// handler answers one endpoint with a value to encode (nil: 204) or an
// error (400). Pre-boot endpoints (Firecracker's term) change the pending
// configuration through update, which refuses them once the VM runs.
type handler func(s *Server, r *http.Request, body []byte) (any, error)

// routes maps "METHOD /path" (with {id} for the last element of the
// device paths) to handlers.
var routes = map[string]handler{
	"GET /":                          (*Server).getInstance,
	"GET /version":                   (*Server).getVersion,
	"GET /machine-config":            (*Server).getMachineConfig,
	"GET /vm/config":                 (*Server).getVMConfig,
	"PUT /boot-source":               (*Server).putBootSource,
	"PUT /machine-config":            (*Server).putMachineConfig,
	"PATCH /machine-config":          (*Server).patchMachineConfig,
	"PUT /network-interfaces/{id}":   (*Server).putNetworkInterface,
	"PUT /drives/{id}":               (*Server).putDrive,
	"PUT /logger":                    (*Server).putLogger,
	"PUT /metrics":                   (*Server).putMetrics,
	"PUT /actions":                   (*Server).putAction,
	"PUT /vsock":                     (*Server).putVsock,
	"PUT /entropy":                   (*Server).putEntropy,
	"PATCH /network-interfaces/{id}": (*Server).patchNetworkInterface,
	"PATCH /drives/{id}":             (*Server).patchDrive,
}

// unsupportedPaths are Firecracker endpoints Flint does not implement
// (every method on them answers so); unsupportedPrefixes the same for
// Firecracker's /NAME/{id} endpoints.
var (
	unsupportedPaths = []string{"/balloon", "/balloon/statistics", "/balloon/hinting/start", "/balloon/hinting/status",
		"/balloon/hinting/stop", "/cpu-config", "/hotplug/memory", "/mmds", "/mmds/config",
		"/snapshot/create", "/snapshot/load", "/vm", "/serial"}
	unsupportedPrefixes = []string{"/pmem/"}
)

func notSupported(_ *Server, r *http.Request, _ []byte) (any, error) {
	return nil, faultf("%s %s is not supported by flint yet", configs.Shown(r.Method), configs.Shown(r.URL.Path))
}

// match finds the route for r (nil: none) and the {id} path element, if
// any; served is false for an endpoint Flint does not implement
// (notSupported). The path is read as Firecracker's router reads it:
// leading slashes and one trailing slash do not count ("//actions/" is
// /actions).
func match(r *http.Request) (rt handler, id string, served bool) {
	p := "/" + strings.TrimLeft(r.URL.Path, "/")
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	if rt, ok := routes[r.Method+" "+p]; ok {
		return rt, "", true
	}
	for _, prefix := range []string{"/network-interfaces/", "/drives/"} {
		if id, ok := strings.CutPrefix(p, prefix); ok && id != "" {
			if r.Method == http.MethodDelete { // Firecracker's hot-unplug
				return notSupported, "", false
			}
			return routes[r.Method+" "+prefix+"{id}"], id, true
		}
	}
	for _, u := range unsupportedPaths {
		if p == u {
			return notSupported, "", false
		}
	}
	for _, u := range unsupportedPrefixes {
		if strings.HasPrefix(p, u) {
			return notSupported, "", false
		}
	}
	return nil, "", false
}

type idKey struct{}

// ServeHTTP answers one API request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, id, served := match(r)
	var out any
	var err error
	switch {
	case rt == nil:
		// Firecracker's phrase, which its clients match on.
		// The path is quoted when it has a control character (a
		// decoded %0A), so that the message stays one line.
		err = faultf("Invalid request method and/or path: %s %s.", configs.Shown(r.Method), configs.Shown(r.URL.Path))
	case r.ContentLength > s.maxBody:
		// Refused before reading: the client need not send (and the
		// server wait for) a body it will not take. Firecracker's
		// words.
		w.Header().Set("Connection", "close")
		err = faultf("Request payload with size %d is larger than the limit of %d allowed by server.", r.ContentLength, s.maxBody)
	default:
		var body []byte
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
		if err != nil {
			// A chunked body, whose size is known only as it
			// is read, or one that failed part way.
			err = faultf("reading the request body: %v (at most %d bytes)", err, s.maxBody)
			break
		}
		if r.Method == http.MethodGet && len(body) > 0 {
			err = faultf("GET request cannot have a body. (%s %s has %d bytes)", r.Method, configs.Shown(r.URL.Path), len(body)) // Firecracker's words
			break
		}
		if served && (r.Method == http.MethodPut || r.Method == http.MethodPatch) && len(body) == 0 {
			// Firecracker's words ("Empty PUT request."), which its
			// clients match on, then Flint's.
			err = faultf("Empty %s request. %s %s needs a JSON body", r.Method, r.Method, configs.Shown(r.URL.Path))
			break
		}
		if id != "" {
			r = r.WithContext(context.WithValue(r.Context(), idKey{}, id))
		}
		out, err = rt(s, r, body)
	}
	// One log line per request, in Firecracker's words (which its users
	// grep for) and at its levels: a refused request at Error.
	log := s.logger()
	received := fmt.Sprintf("The API server received a %s request on %s.", methodWord(r.Method), configs.Shown(r.URL.Path))
	if err != nil {
		log.Error(received + " Received Error. Status code: 400 Bad Request. Message: " + err.Error())
		writeJSON(w, http.StatusBadRequest, map[string]string{"fault_message": err.Error()})
		return
	}
	if out == nil {
		log.Info(received + " The request was executed successfully. Status code: 204 No Content.")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	log.Info(received + " The request was executed successfully. Status code: 200 OK.")
	writeJSON(w, http.StatusOK, out)
}

// methodWord writes an HTTP method as Firecracker's log does: "Put".
func methodWord(m string) string {
	if m == "" {
		return m
	}
	return m[:1] + strings.ToLower(m[1:])
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"fault_message": "encoding the response failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// update applies a pre-boot change to the pending configuration under the
// lock: refused once the VM has started, and kept only if the whole
// configuration is still consistent.
func (s *Server) update(r *http.Request, fn func(c *configs.VMConfig) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.updateLocked(r, fn)
}

// updateLocked is update with s.mu held.
func (s *Server) updateLocked(r *http.Request, fn func(c *configs.VMConfig) error) error {
	if s.started {
		if pathID(r) != "" { // PUT /drives/{id}, /network-interfaces/{id}
			return faultf("%s %s %s: hot-plugging a device into the running VM (Firecracker's PUT after InstanceStart) is not supported by flint yet", notAfterStart, r.Method, configs.Shown(r.URL.Path))
		}
		return faultf("%s %s %s is pre-boot only: the VM is running", notAfterStart, r.Method, configs.Shown(r.URL.Path))
	}
	c := s.cfg
	c.NetworkInterfaces = append([]configs.NetworkInterface(nil), s.cfg.NetworkInterfaces...)
	c.Drives = append([]configs.Drive(nil), s.cfg.Drives...)
	if err := fn(&c); err != nil {
		return err
	}
	if err := c.ValidatePending(); err != nil {
		return err
	}
	s.cfg = c
	return nil
}

func pathID(r *http.Request) string {
	id, _ := r.Context().Value(idKey{}).(string)
	return id
}
