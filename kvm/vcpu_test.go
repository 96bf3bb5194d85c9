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
