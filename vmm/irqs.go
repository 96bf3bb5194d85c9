package vmm

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/internal/eventfd"
	"github.com/flintvm/flint/kvm"
	"github.com/flintvm/flint/virtio/transport"
)

// Interrupt numbering: GSIs 0-23 are the IOAPIC's pins (ISA IRQs 0-15 also
// reach the PICs); MSI routes use GSIs from firstMSIGSI up.
const (
	firstMSIGSI = 24
	maxGSI      = 4095 // KVM_MAX_IRQ_ROUTES - 1
)

// Free IOAPIC pins for virtio-mmio devices (edge) and PCI INTx (level).
var (
	mmioGSIs = []uint32{5, 6, 7, 9, 10, 11, 13, 14, 15}
	intxGSIs = []uint32{16, 17, 18, 19, 20, 21, 22, 23}
)

// irqVM is what the interrupt wiring needs of a KVM VM: *kvm.VM, or a
// fake that counts the ioctls in tests (a guest must not be able to make
// Flint issue expensive ones in a loop: issue 13 finding 12).
type irqVM interface {
	SetGSIRouting(entries []kvm.IRQRoutingEntry) error
	RegisterIRQFD(efd int, gsi uint32) error
	RegisterIOEventFD(e kvm.IOEventFD) error
	UnregisterIOEventFD(e kvm.IOEventFD) error
}

var _ irqVM = (*kvm.VM)(nil)

// irqRouter owns the VM's GSI routing table and the irqfds behind device
// interrupts. The table is the default irqchip routing plus one MSI route
// per allocated vector; KVM_SET_GSI_ROUTING replaces it whole.
type irqRouter struct {
	vm      irqVM
	mu      sync.Mutex
	msi     map[uint32]kvm.IRQRoutingEntry // GSI -> MSI route
	nextMSI uint32
	dirty   bool // msi holds routes not installed yet
	// cold: one of them is a vector's first unmasked route (it must be
	// installed before the transport triggers it); otherwise they are
	// only changes to live vectors (hot), rate-bounded.
	cold      bool
	hotTokens float64   // hot rebuilds allowed now (hotBurst at most)
	hotAt     time.Time // when hotTokens was last refilled
	later     *time.Timer
	nextPin   int
	fds       []int // every eventfd registered as an irqfd, closed by close
}

// A guest that rewrites live (unmasked) MSI-X entries in a loop, which the
// PCI specification leaves undefined but older Linux kernels do when they
// move an interrupt, costs at most hotBurst rebuilds at once and hotRate a
// second; a change over the budget is installed when a token is back
// (issue 13 finding 12). Until then the vector keeps its previous route.
const (
	hotBurst = 64
	hotRate  = 64 // per second
)

func newIRQRouter(vm irqVM) *irqRouter {
	return &irqRouter{vm: vm, msi: map[uint32]kvm.IRQRoutingEntry{}, nextMSI: firstMSIGSI}
}

// mmioGSI hands out the next free IOAPIC pin for a virtio-mmio device.
func (r *irqRouter) mmioGSI() (uint32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nextPin >= len(mmioGSIs) {
		return 0, fmt.Errorf("no free interrupt pin for another virtio-mmio device (at most %d)", len(mmioGSIs))
	}
	g := mmioGSIs[r.nextPin]
	r.nextPin++
	return g, nil
}

// irqfd is an eventfd registered as KVM's irqfd on a GSI: Trigger injects
// one interrupt without a VM exit or an ioctl.
type irqfd struct {
	fd int
}

// newIRQFD creates an eventfd and binds it to gsi.
func (r *irqRouter) newIRQFD(gsi uint32) (*irqfd, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := r.vm.RegisterIRQFD(fd, gsi); err != nil {
		unix.Close(fd)
		return nil, err
	}
	r.mu.Lock()
	r.fds = append(r.fds, fd)
	r.mu.Unlock()
	return &irqfd{fd: fd}, nil
}

// Trigger implements devices.IRQTrigger. It does not allocate. EAGAIN means
// the counter is saturated: interrupts are already pending, so nothing is
// lost.
func (f *irqfd) Trigger() error { return eventfd.Signal(f.fd) }

// commit installs the routing table: defaults plus every MSI route.
// Callers hold r.mu.
func (r *irqRouter) commit() error {
	routes := kvm.DefaultGSIRouting()
	for gsi := uint32(firstMSIGSI); gsi < r.nextMSI; gsi++ {
		if e, ok := r.msi[gsi]; ok {
			routes = append(routes, e)
		}
	}
	if err := r.vm.SetGSIRouting(routes); err != nil {
		return err
	}
	r.dirty, r.cold = false, false
	return nil
}

// commitHot installs changes to live vectors within the rate bound, or
// schedules them. Callers hold r.mu.
func (r *irqRouter) commitHot() error {
	now := time.Now()
	if r.hotAt.IsZero() {
		r.hotTokens = hotBurst
	} else {
		r.hotTokens = min(hotBurst, r.hotTokens+now.Sub(r.hotAt).Seconds()*hotRate)
	}
	r.hotAt = now
	if r.hotTokens >= 1 {
		r.hotTokens--
		return r.commit()
	}
	wait := time.Duration((1 - r.hotTokens) / hotRate * float64(time.Second))
	if r.later == nil {
		r.later = time.AfterFunc(wait, r.commitLater)
	} else {
		r.later.Reset(wait)
	}
	return nil
}

// commitLater installs what commitHot postponed.
func (r *irqRouter) commitLater() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dirty && r.fds != nil {
		r.commit() // a failure leaves the old routes; the next change retries
	}
}

func (r *irqRouter) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.later != nil {
		r.later.Stop()
	}
	for _, fd := range r.fds {
		unix.Close(fd)
	}
	r.fds = nil
}

// msixRouter implements the virtio-pci transport's MSIXRouter for one
// function: vector i has its own GSI and irqfd.
type msixRouter struct {
	r    *irqRouter
	gsis []uint32
	fds  []*irqfd
	live []bool // the vector was last reported unmasked (under r.mu)
}

// newMSIX allocates n vectors, their placeholder routes installed with
// one KVM_SET_GSI_ROUTING.
func (r *irqRouter) newMSIX(n int) (*msixRouter, error) {
	m := &msixRouter{r: r}
	r.mu.Lock()
	if int(r.nextMSI)+n-1 > maxGSI {
		r.mu.Unlock()
		return nil, errors.New("out of GSIs for MSI-X vectors")
	}
	for i := 0; i < n; i++ {
		gsi := r.nextMSI
		r.nextMSI++
		// Until the guest programs it, a vector points nowhere useful;
		// an irqfd needs a route to exist, so install a placeholder.
		r.msi[gsi] = kvm.MSIRoute(gsi, 0xfee00000, 0)
		m.gsis = append(m.gsis, gsi)
	}
	err := r.commit()
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	for _, gsi := range m.gsis {
		f, err := r.newIRQFD(gsi)
		if err != nil {
			return nil, err
		}
		m.fds = append(m.fds, f)
	}
	return m, nil
}

// SetVector records vector v's MSI message as its route. A masked vector
// keeps the route it has (the transport never triggers it), so writes to
// masked entries cost nothing; the new route is installed by Commit.
func (m *msixRouter) SetVector(v int, addr uint64, data uint32, masked bool) error {
	if v < 0 || v >= len(m.gsis) {
		return fmt.Errorf("MSI-X vector %d out of range", v)
	}
	m.r.mu.Lock()
	defer m.r.mu.Unlock()
	if m.live == nil {
		m.live = make([]bool, len(m.gsis))
	}
	hot := m.live[v]
	m.live[v] = !masked
	if masked {
		return nil
	}
	gsi := m.gsis[v]
	if e := kvm.MSIRoute(gsi, addr, data); e != m.r.msi[gsi] {
		m.r.msi[gsi] = e
		m.r.dirty = true
	}
	// A vector coming live must find its route installed, a postponed
	// one included, before the transport triggers it.
	m.r.cold = m.r.cold || !hot && m.r.dirty
	return nil
}

// Commit installs the routes SetVector changed: one KVM_SET_GSI_ROUTING
// for a whole guest register write, none if no unmasked route changed;
// changes to live vectors only are rate-bounded (commitHot).
func (m *msixRouter) Commit() error {
	m.r.mu.Lock()
	defer m.r.mu.Unlock()
	switch {
	case !m.r.dirty:
		return nil
	case m.r.cold:
		return m.r.commit()
	}
	return m.r.commitHot()
}

// Trigger sends vector v.
func (m *msixRouter) Trigger(v int) error {
	if v < 0 || v >= len(m.fds) {
		return unix.EINVAL
	}
	return m.fds[v].Trigger()
}

// ioeventNotifier implements transport.Notifier with KVM ioeventfds: a
// guest write to a notify register signals the queue's kick eventfd inside
// KVM, without an exit to Flint.
type ioeventNotifier struct{ vm irqVM }

func (n ioeventNotifier) ioevent(m transport.NotifyMatch, fd int) kvm.IOEventFD {
	return kvm.IOEventFD{FD: fd, Addr: m.Addr, Len: m.Len, Datamatch: m.Datamatch, Value: m.Data}
}

// Attach implements transport.Notifier.
func (n ioeventNotifier) Attach(m transport.NotifyMatch, kick *os.File) error {
	return transport.ControlFD(kick, func(fd int) error { return n.vm.RegisterIOEventFD(n.ioevent(m, fd)) })
}

// Detach implements transport.Notifier.
func (n ioeventNotifier) Detach(m transport.NotifyMatch, kick *os.File) error {
	return transport.ControlFD(kick, func(fd int) error { return n.vm.UnregisterIOEventFD(n.ioevent(m, fd)) })
}
