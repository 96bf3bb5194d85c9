package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/flintvm/flint/api"
	"github.com/flintvm/flint/boot"
	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/internal/hostfile"
	"github.com/flintvm/flint/ratelimit"
	"github.com/flintvm/flint/vmm"
)

// machine is a built VM as the CLI drives it; *vmm.Machine is one.
type machine interface {
	Run() vmm.Result
	Close() error
	SendCtrlAltDel() error
	FlushMetrics() error
}

// updatable is a machine whose devices change while it runs (the API's
// PATCH requests); *vmm.Machine is one.
type updatable interface {
	UpdateDrive(id, path string, rl *ratelimit.Config) error
	UpdateNetInterface(id string, rx, tx *ratelimit.Config) error
}

var _ updatable = (*vmm.Machine)(nil)

func newMachine(cfg vmm.Config) (machine, error) { return vmm.New(cfg) }

// started is a VM the API's InstanceStart built, ready to run.
type started struct {
	m       machine
	cfg     vmm.Config
	release func()
}

// apiController is the api.Controller (and api.Updater) of `flint run
// --api-sock` and `flint firecracker`: Start builds the VM from the API's
// configuration with the command line's flags on top (as for --config)
// and hands it to serveAPI, which runs it.
type apiController struct {
	a       *app
	c       *cli.Context
	mu      sync.Mutex
	m       machine
	started chan started
	// filtered: a seccomp filter runs once the VM starts, and it does
	// not allow opening files, so a drive cannot change its image.
	filtered bool
	// transport, when set, is the devices' transport where the config's
	// "flint" section names none (flint firecracker: virtio-mmio).
	transport configs.Transport
	// kernel is the --kernel file as checkAPIFlags read it (nil: none).
	kernel []byte
}

var _ api.Updater = (*apiController)(nil)

// apiVMConfig adapts a VM the API builds: a keyboard for SendCtrlAltDel,
// and rate limiters on every device so PATCH can set them.
func apiVMConfig(cfg *vmm.Config) {
	cfg.Keyboard = true
	cfg.PatchableLimiters = true
}

// Start builds the VM; errors (bad paths, a kernel that is neither a bzImage nor an ELF vmlinux,
// no /dev/kvm...) go back to the client as 400s and the API keeps waiting.
func (ac *apiController) Start(fc configs.VMConfig) error {
	fc = withDefaultTransport(fc, ac.transport)
	cfg, release, err := buildConfig(ac.c, &fc, "configuration", ac.kernel)
	if err != nil {
		release()
		return err
	}
	apiVMConfig(&cfg)
	m, err := ac.a.newVM(cfg)
	if err != nil {
		release()
		return err
	}
	ac.setMachine(m)
	ac.started <- started{m: m, cfg: cfg, release: release}
	return nil
}

func (ac *apiController) setMachine(m machine) {
	ac.mu.Lock()
	ac.m = m
	ac.mu.Unlock()
}

func (ac *apiController) running() (machine, error) {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	if ac.m == nil {
		return nil, errors.New("the VM is not running")
	}
	return ac.m, nil
}

// SendCtrlAltDel presses Ctrl-Alt-Del on the guest's keyboard.
func (ac *apiController) SendCtrlAltDel() error {
	m, err := ac.running()
	if err != nil {
		return err
	}
	return m.SendCtrlAltDel()
}

// FlushMetrics writes a metrics object now; without a metrics file there
// is nothing to write, which is no error (as in Firecracker).
func (ac *apiController) FlushMetrics() error {
	m, err := ac.running()
	if err != nil {
		return err
	}
	if err := m.FlushMetrics(); err != nil && !errors.Is(err, vmm.ErrNoMetrics) {
		return err
	}
	return nil
}

func (ac *apiController) updater() (updatable, error) {
	m, err := ac.running()
	if err != nil {
		return nil, err
	}
	u, ok := m.(updatable)
	if !ok {
		return nil, errors.New("this VM cannot change its devices while it runs")
	}
	return u, nil
}

// UpdateDrive implements api.Updater.
func (ac *apiController) UpdateDrive(id, path string, rl *configs.RateLimiter) error {
	if path != "" && ac.filtered {
		return errors.New("path_on_host: the system-call filter installed at start does not allow opening files, so a running drive cannot change its file with it (start flint with --no-seccomp to do so)")
	}
	u, err := ac.updater()
	if err != nil {
		return err
	}
	return u.UpdateDrive(id, path, vmm.RateLimitConfig(rl))
}

// UpdateNetworkInterface implements api.Updater.
func (ac *apiController) UpdateNetworkInterface(id string, rx, tx *configs.RateLimiter) error {
	u, err := ac.updater()
	if err != nil {
		return err
	}
	return u.UpdateNetInterface(id, vmm.RateLimitConfig(rx), vmm.RateLimitConfig(tx))
}

// apiRun is one API-mode run: the socket, and either a configuration to
// boot at once (then the API takes post-boot calls) or the one the
// client starts from.
type apiRun struct {
	sock string
	// boot, when set, is booted at once; src names it in errors
	// ("--config vm.json").
	boot *configs.VMConfig
	src  string
	// preset is the pending configuration's start without boot (nil:
	// Firecracker's defaults): `flint firecracker --metrics-path` and
	// the logger flags put theirs there.
	preset *configs.VMConfig
	id     string       // the instance id GET / reports
	log    *slog.Logger // the API's request log (nil: none)
	// filtered says a seccomp filter will run, transport is the
	// devices' default transport (see apiController).
	filtered  bool
	transport configs.Transport
	limits    api.Limits
	maxBody   int64
	// kernel is the --kernel file, read once before listening: what was
	// checked is what boots, and a large kernel is read once.
	kernel []byte
	// outputs are kept once the API serves (vmm.OutputFile.Keep).
	outputs []*vmm.OutputFile
}

// runAPI is `flint run --api-sock PATH`: serve the API and, with --config,
// boot at once (the API then takes post-boot calls); without, wait for the
// client's InstanceStart or a signal. The socket is removed on exit.
func (a *app) runAPI(c *cli.Context, sock string) error {
	r := apiRun{sock: sock}
	var err error
	if p := c.String("config"); p != "" {
		fc, err := loadConfigFile(p)
		if err != nil {
			return err
		}
		r.boot, r.src = fc, "--config "+configs.Shown(p)
	} else if r.kernel, err = checkAPIFlags(c); err != nil {
		return err
	}
	before, err := a.seccompHook(c)
	if err != nil {
		return err
	}
	r.filtered = before != nil
	return a.serveAPI(c, r)
}

// checkAPIFlags checks, before `flint run --api-sock` listens for a
// client to configure the VM, the flags InstanceStart will put on top of
// that configuration (checkFlagValues), and that the --kernel and
// --initrd files given are kernels and regular files: a bad flag is the
// user's usage error now, not a 400 answering the client later. It
// returns the --kernel file as read, which InstanceStart boots (nil
// without --kernel).
func checkAPIFlags(c *cli.Context) ([]byte, error) {
	if _, err := checkFlagValues(c); err != nil {
		return nil, err
	}
	var kernel []byte
	if k := c.String("kernel"); k != "" {
		b, err := readKernel("--kernel", k) // an ELF is checked as it is read
		if err != nil {
			return nil, err
		}
		if !boot.IsELF(b) {
			if _, err := boot.ParseSetupHeader(b); err != nil {
				return nil, usagef("--kernel: %s: %v", configs.Shown(k), err)
			}
		}
		kernel = b
	}
	if p := c.String("initrd"); p != "" {
		f, err := hostfile.OpenInput(p, os.O_RDONLY, hostfile.Regular)
		if err != nil {
			return nil, usagef("--initrd: %s", fileError(p, err))
		}
		f.Close()
	}
	return kernel, nil
}

// serveAPI serves the API on r.sock until the VM it runs ends, a signal
// (SIGINT, SIGTERM, SIGHUP) arrives before InstanceStart, or a.apiStop
// closes. The socket exists only while serving: every way out (the
// guest's end, a failed start, a signal) removes it.
func (a *app) serveAPI(c *cli.Context, r apiRun) error {
	ctrl := &apiController{a: a, c: c, started: make(chan started, 1), filtered: r.filtered, transport: r.transport, kernel: r.kernel}
	boot := started{release: func() {}}
	if r.boot != nil {
		fc := withDefaultTransport(*r.boot, r.transport) // GET /vm/config shows r.boot as given
		cfg, release, err := buildConfig(c, &fc, r.src, nil)
		if err != nil {
			release()
			return err
		}
		apiVMConfig(&cfg)
		boot = started{cfg: cfg, release: release}
	}
	defer boot.release()
	// Signals are caught before the socket exists, so none ends flint
	// between the two without removing it.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	l, err := api.Listen(r.sock)
	if err != nil {
		return usagef("--api-sock %s: %v", r.sock, err)
	}
	for _, f := range r.outputs {
		f.Keep()
	}
	// Shutdown closes the listener only if Serve got to track it: a VM
	// that fails to build at once can beat Serve's goroutine there.
	// Closing it removes the socket (once).
	defer l.Close()
	cfg := r.preset
	if r.boot != nil {
		cfg = r.boot
	}
	srv := api.New(api.Options{Controller: ctrl, ID: r.id, Version: apiVersion(), Config: cfg, Started: r.boot != nil,
		Log: r.log, Limits: r.limits, MaxBodySize: r.maxBody})
	go srv.Serve(l)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx) // closes the listener, which removes the socket
	}()
	if r.boot != nil {
		m, err := a.newVM(boot.cfg)
		if err != nil {
			a.code = vmExitCode(err, a.stderr)
			return nil
		}
		ctrl.setMachine(m)
		a.runBuilt(m, boot.cfg, sigs)
		return nil
	}
	select {
	case st := <-ctrl.started:
		defer st.release()
		a.runBuilt(st.m, st.cfg, sigs)
	case s := <-sigs:
		a.code = 128 + int(s.(syscall.Signal))
	case <-a.apiStop:
		a.code = vmm.ExitOK
	}
	return nil
}

// runBuilt runs a built VM to its end, unless a signal arrived while it
// was built (the VM handles signals once it runs; sigs stays registered
// meanwhile, so none ends flint without its clean-up).
func (a *app) runBuilt(m machine, cfg vmm.Config, sigs <-chan os.Signal) {
	select {
	case s := <-sigs:
		m.Close()
		a.code = 128 + int(s.(syscall.Signal))
		return
	default:
	}
	a.code = runMachine(m, cfg, a.stderr)
}

// semverShape matches a semantic version (2.0.0), with an optional "v".
var semverShape = regexp.MustCompile(`^v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)` +
	`(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)

// apiVersion is Flint's version as a semantic version without the "v",
// the shape Firecracker's clients parse from GET /version
// (firecracker_version) and GET / (vmm_version): the build's
// -X main.Version when it has that shape, else the module version Go
// stamped into the binary (a tag, or a pseudo-version such as
// 0.0.0-20261206083000-7c17dd9abcde), else 0.0.0-dev with -X
// main.Version (the Makefile's `git describe`: 985ba56-dirty) or the
// commit as build metadata.
func apiVersion() string {
	bi, _ := debug.ReadBuildInfo()
	return semver(Version, bi)
}

func semver(v string, bi *debug.BuildInfo) string {
	if semverShape.MatchString(v) {
		return strings.TrimPrefix(v, "v")
	}
	if bi != nil && semverShape.MatchString(bi.Main.Version) {
		return strings.TrimPrefix(bi.Main.Version, "v")
	}
	if meta := buildMeta(v); meta != "" {
		// `git describe --always --dirty` without a tag (the Makefile's
		// VERSION): 985ba56-dirty.
		return "0.0.0-dev+" + meta
	}
	if bi == nil {
		return "0.0.0-dev"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			if meta := buildMeta(s.Value[:12]); meta != "" {
				return "0.0.0-dev+" + meta
			}
		}
	}
	return "0.0.0-dev"
}

// buildMeta turns v into semver build metadata: dot-separated runs of
// letters, digits and '-' ("" when none).
func buildMeta(v string) string {
	ids := strings.FieldsFunc(v, func(r rune) bool {
		return !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	})
	return strings.Join(ids, ".")
}
