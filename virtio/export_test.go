package virtio

// SetNudge replaces nudge for a test; the returned function restores it.
func SetNudge(f func()) (restore func()) {
	old := nudge
	nudge = f
	return func() { nudge = old }
}

// NudgeEvery is nudgeEvery, for the tests.
const NudgeEvery = nudgeEvery
