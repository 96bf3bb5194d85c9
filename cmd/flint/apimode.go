package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/flintvm/flint/api"
	"github.com/flintvm/flint/configs"
	"github.com/flintvm/flint/vmm"
)

// machine is a built VM as the CLI drives it; *vmm.Machine is one.
type machine interface {
	Run() vmm.Result
	Close() error
	SendCtrlAltDel() error
	FlushMetrics() error
}

func newMachine(cfg vmm.Config) (machine, error) { return vmm.New(cfg) }

// started is a VM the API's InstanceStart built, ready to run.
type started struct {
	m       machine
	cfg     vmm.Config
	release func()
}

// apiController is the api.Controller of `flint run --api-sock`: Start
// builds the VM from the API's configuration with the command line's
// flags on top (as for --config) and hands it to runAPI, which runs it.
type apiController struct {
	a       *app
	c       *cli.Context
	mu      sync.Mutex
	m       machine
	started chan started
}

// Start builds the VM; errors (bad paths, a kernel that is not a bzImage,
// no /dev/kvm...) go back to the client as 400s and the API keeps waiting.
func (ac *apiController) Start(fc configs.VMConfig) error {
	cfg, release, err := buildConfig(ac.c, &fc, "configuration")
	if err != nil {
		release()
		return err
	}
	cfg.Keyboard = true // for SendCtrlAltDel
	m, err := ac.a.newVM(cfg)
	if err != nil {
		release()
		return err
	}
	ac.mu.Lock()
	ac.m = m
	ac.mu.Unlock()
	ac.started <- started{m: m, cfg: cfg, release: release}
	return nil
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

// FlushMetrics writes a metrics object now.
func (ac *apiController) FlushMetrics() error {
	m, err := ac.running()
	if err != nil {
		return err
	}
	return m.FlushMetrics()
}

// runAPI is `flint run --api-sock PATH`: serve the API and, with --config,
// boot at once (the API then takes post-boot calls); without, wait for the
// client's InstanceStart or a signal. The socket is removed on exit.
func (a *app) runAPI(c *cli.Context, sock string) error {
	var fc *configs.VMConfig
	ctrl := &apiController{a: a, c: c, started: make(chan started, 1)}
	boot := started{release: func() {}}
	if p := c.String("config"); p != "" {
		var err error
		if fc, err = loadConfigFile(p); err != nil {
			return err
		}
		cfg, release, err := buildConfig(c, fc, "--config "+p)
		if err != nil {
			release()
			return err
		}
		cfg.Keyboard = true // for SendCtrlAltDel
		boot = started{cfg: cfg, release: release}
	}
	l, err := api.Listen(sock)
	if err != nil {
		boot.release()
		return usagef("--api-sock %s: %v", sock, err)
	}
	srv := api.New(api.Options{Controller: ctrl, Version: version(), Config: fc, Started: fc != nil})
	go srv.Serve(l)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	if fc != nil {
		defer boot.release()
		m, err := a.newVM(boot.cfg)
		if err != nil {
			a.code = vmExitCode(err, a.stderr)
			return nil
		}
		ctrl.mu.Lock()
		ctrl.m = m
		ctrl.mu.Unlock()
		a.code = runMachine(m, boot.cfg, a.stderr)
		return nil
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	select {
	case st := <-ctrl.started:
		defer st.release()
		a.code = runMachine(st.m, st.cfg, a.stderr)
	case s := <-sigs:
		a.code = 128 + int(s.(syscall.Signal))
	case <-a.apiStop:
		a.code = vmm.ExitOK
	}
	return nil
}
