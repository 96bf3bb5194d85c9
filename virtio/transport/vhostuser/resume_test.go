package vhostuser_test

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/flintvm/flint/virtio/netdev"
	vut "github.com/flintvm/flint/virtio/transport/vhostuser/vhostusertest"
)

// tapLike is a fake backend that leaves and rejoins the host's steering
// as a TAP queue does (netdev.Steerer): detached, the frames the device
// writes to it fail (EBADFD, as a detached TAP queue's writes).
type tapLike struct{ *fakeBackend }

func (b tapLike) SetEnabled(on bool) error {
	if on {
		b.SetTxErr(nil)
	} else {
		b.SetTxErr(unix.EBADFD)
	}
	return nil
}

// resumeMQ serves a two-pair device over TAP-like backends, starts all
// five rings and has the driver use both pairs (VQ_PAIRS_SET 2).
func resumeMQ(t *testing.T) (*mqFrontend, []*vut.Ring) {
	q := newMQOver(t, true, func(b *fakeBackend) netdev.Backend { return tapLike{b} })
	rings := make([]*vut.Ring, 5)
	for i := range rings {
		rings[i] = q.start(i)
	}
	q.pairsSet(rings[4], 2)
	return q, rings
}

// TestResumeKeepsPairs: a restart of the device inside the session that
// the guest's driver did not ask for (a repeated SET_MEM_TABLE, a change
// of the frontend's own feature bit, more call fd swaps than the session
// keeps, a ring's kick fd replaced) keeps the two pairs the driver chose:
// frames on pair 2 flow both ways through its backend. Without
// virtio.Resumer the device restarted as a fresh one, on pair 1 only,
// and pair 2's backend was detached under a driver still using it.
func TestResumeKeepsPairs(t *testing.T) {
	for _, c := range []struct {
		name    string
		restart func(q *mqFrontend, rings []*vut.Ring)
	}{
		{"memory table", func(q *mqFrontend, _ []*vut.Ring) { q.must(q.f.SetMemTable(q.m.Region())) }},
		{"protocol feature bit", func(q *mqFrontend, _ []*vut.Ring) {
			q.must(q.f.SetU64(vut.SetFeatures, guestFeatures|netdev.FeatureMQ.Mask()|netdev.FeatureCtrlVQ.Mask()))
		}},
		{"call fd swaps", func(q *mqFrontend, rings []*vut.Ring) {
			for range 16 {
				q.must(q.f.SetVringFD(vut.SetVringCall, 2, int(rings[2].CallW.Fd())))
			}
		}},
		{"kick fd replaced", func(q *mqFrontend, rings []*vut.Ring) {
			q.must(q.f.SetVringFD(vut.SetVringKick, 3, int(rings[3].Kick.Fd())))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			q, rings := resumeMQ(t)
			sent := []int{0, 0}
			q.pairTraffic(1, rings[2], rings[3], sent)
			before := starts(q)
			c.restart(q, rings)
			if starts(q) == before {
				t.Fatalf("the device did not restart; log:\n%s", q.log.String())
			}
			if n := q.dev.ActivePairs(); n != 2 {
				t.Fatalf("%d pairs in use after the restart, want the driver's 2", n)
			}
			q.pairTraffic(1, rings[2], rings[3], sent)
			q.pairTraffic(0, rings[0], rings[1], sent)
		})
	}
}

// starts counts the device's starts the session logged.
func starts(q *mqFrontend) int { return strings.Count(q.log.String(), "vhost-user device started") }

// TestResumeGuestReset: what the frontend does for its guest's reset
// makes the next start a fresh device again, on pair 1 until the
// driver's next VQ_PAIRS_SET: QEMU's GET_VRING_BASE of every ring, a
// ring set up again (UML: SET_VRING_NUM, _BASE, _ADDR when its driver
// binds), or the device's features negotiated anew.
func TestResumeGuestReset(t *testing.T) {
	for _, c := range []struct {
		name  string
		reset func(q *mqFrontend, rings []*vut.Ring)
	}{
		{"GET_VRING_BASE", func(q *mqFrontend, rings []*vut.Ring) {
			for i := range rings {
				_, err := q.f.GetVringBase(uint32(i))
				q.must(err)
			}
			for i := range rings {
				rings[i] = q.start(i)
			}
		}},
		{"ring set up again", func(q *mqFrontend, rings []*vut.Ring) {
			rings[4] = q.start(4)
		}},
		{"features", func(q *mqFrontend, _ []*vut.Ring) {
			mq := netdev.FeatureMQ.Mask() | netdev.FeatureCtrlVQ.Mask() | vut.ProtocolFeatures
			q.must(q.f.SetU64(vut.SetFeatures, guestFeatures&^netdev.FeatureMrgRxbuf.Mask()|mq))
			q.must(q.f.SetU64(vut.SetFeatures, guestFeatures|mq))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			q, rings := resumeMQ(t)
			c.reset(q, rings)
			if n := q.dev.ActivePairs(); n != 1 {
				t.Fatalf("%d pairs in use after the guest's reset, want 1", n)
			}
			sent := []int{0, 0}
			q.pairTraffic(0, rings[0], rings[1], sent)
			q.pairsSet(rings[4], 2)
			q.pairTraffic(1, rings[2], rings[3], sent)
		})
	}
}
