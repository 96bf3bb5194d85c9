package pci

import (
	"testing"

	pcidev "github.com/flintvm/flint/devices/pci"
)

// TestBARToggleKeepsIOEventFDs (issue 13 finding 12): a guest that turns
// memory decoding off and on again in a loop, the BAR where it was, must
// not make the VMM unregister and register every queue's ioeventfd (two
// KVM_IOEVENTFD ioctls per queue per toggle). The ioeventfds stay where
// they are while decoding is off and move only when the BAR decodes at a
// new address.
func TestBARToggleKeepsIOEventFDs(t *testing.T) {
	r := newRig(t, rigOpt{notifier: true})
	r.bringUp(true)
	attaches, detaches := r.notif.Attaches, r.notif.Detaches
	cmd := r.cfgRead(pcidev.RegCommand, 2)
	for i := 0; i < 100; i++ {
		r.cfgWrite(pcidev.RegCommand, 2, cmd&^pcidev.CommandMemory)
		r.cfgWrite(pcidev.RegCommand, 2, cmd)
	}
	if a, d := r.notif.Attaches-attaches, r.notif.Detaches-detaches; a != 0 || d != 0 {
		t.Fatalf("100 decode toggles at the same address: %d ioeventfd registrations, %d unregistrations", a, d)
	}
	if !r.notif.GuestWrite(r.bar+NotifyOffset+4, 2, 1) {
		t.Fatal("queue 1's ioeventfd gone")
	}
	// Moving the BAR moves them: one unregistration and one registration
	// per queue.
	const newBAR = 0xc010_0000
	r.cfgWrite(pcidev.RegCommand, 2, cmd&^pcidev.CommandMemory)
	r.cfgWrite(pcidev.RegBAR0, 4, newBAR)
	r.cfgWrite(pcidev.RegBAR0+4, 4, 0)
	r.cfgWrite(pcidev.RegCommand, 2, cmd)
	if a, d := r.notif.Attaches-attaches, r.notif.Detaches-detaches; a != 2 || d != 2 {
		t.Fatalf("BAR moved: %d registrations, %d unregistrations, want 2 and 2", a, d)
	}
	if !r.notif.GuestWrite(newBAR+NotifyOffset+4, 2, 1) || r.notif.GuestWrite(testBAR+NotifyOffset+4, 2, 1) {
		t.Fatal("ioeventfds did not follow the BAR")
	}
}
