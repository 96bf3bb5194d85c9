package kvm

import "testing"

func TestExitNames(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{SystemEventName(SystemEventCrash), "crash"},
		{SystemEventName(4), "wakeup"},
		{SystemEventName(6), "SEV termination"},
		{SystemEventName(0), "type 0"},
		{SystemEventName(99), "type 99"},
		{InternalErrorName(1), "emulation failure: KVM could not emulate the guest's instruction"},
		{InternalErrorName(0), "unknown suberror"},
		{InternalErrorName(1 << 31), "unknown suberror"},
		{ExitAgain.String(), "KVM_RUN EAGAIN"},
		{ExitIntr.String(), "KVM_EXIT_INTR"},
		{ExitReason(99).String(), "KVM_EXIT_99"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

// TestKickAfterClose: a stop or a state dump can kick a vCPU while the
// machine closes it (vmm's DumpState kicks each vCPU; a --timeout dump
// races a guest that powers off and a Close that follows). Kick wrote
// immediate_exit into the unmapped kvm_run page, a fault that kills the
// process; now it does nothing.
func TestKickAfterClose(t *testing.T) {
	tv := newTestVM(t, []byte{0xeb, 0xfe})
	tv.vcpu.Kick()
	if err := tv.vcpu.Close(); err != nil {
		t.Fatal(err)
	}
	tv.vcpu.Kick()
	if err := tv.vcpu.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
