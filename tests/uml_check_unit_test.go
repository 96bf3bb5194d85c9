package e2e

import (
	"strings"
	"testing"
)

// A passing two-boot transcript (abridged): the checks accept it, and each
// corruption below makes them fail.
const umlGoodOutput = `UML-CASE-START backend=flint rx=big indirect=off mode=test boots=1
UML-HOST-BOOT boot=1 rc=0 secs=7 killed=0
UML-GUEST-IF dev=eth0 driver=virtio_net mtu=1500 features=1101010111111110100000000000010010000000 boot=1
UML-GUEST-PING result=ok waited=0 received=3 boot=1
UML-GUEST-HOSTPING result=ok secs=0.2 msg=host-ping=ok boot=1
UML-GUEST-G2H result=ok bytes=1048576 sha256=aaaa secs=0.1 boot=1
UML-GUEST-H2G result=ok bytes=1048576 sha256=bbbb secs=0.1 boot=1
UML-GUEST-DONE boot=1
UML-HOST-PING boot=1 result=ok 3_packets_received
UML-HOST-H2G boot=1 bytes=1048576 sha256=bbbb
UML-HOST-G2H boot=1 bytes=1048576 sha256=aaaa
UML-HOST-BACKEND running=yes connections=1 warnings=0
UML-BACKEND-LOG time=... level=INFO msg="frontend connected"
UML-CASE-END
`

func TestCheckUMLCase(t *testing.T) {
	c := umlCase{rx: "big", indirect: false, sizeMiB: 1, boots: 1}
	if bad := checkUMLCase(c, umlGoodOutput); len(bad) != 0 {
		t.Fatalf("good transcript rejected: %v", bad)
	}
	for name, edit := range map[string][2]string{
		"g2h checksum":      {"sha256=aaaa\nUML-HOST-BACKEND", "sha256=aaab\nUML-HOST-BACKEND"},
		"h2g short":         {"UML-GUEST-H2G result=ok bytes=1048576", "UML-GUEST-H2G result=ok bytes=1048000"},
		"host ping":         {"UML-HOST-PING boot=1 result=ok", "UML-HOST-PING boot=1 result=fail"},
		"backend died":      {"running=yes", "running=no"},
		"mrg negotiated":    {"features=1101010111111110", "features=1101010111111111"},
		"script unfinished": {"UML-CASE-END\n", ""},
		"setup aborted":     {"UML-CASE-END", "UML-HOST-ABORT reason=backend-not-ready\nUML-CASE-END"},
		"boot timed out":    {"UML-GUEST-DONE boot=1\n", "UML-GUEST-DONE boot=1\nUML-HOST-TIMEOUT boot=1 secs=120\n"},
		"guest ping":        {"UML-GUEST-PING result=ok", "UML-GUEST-PING result=fail"},
		"guest unfinished":  {"UML-GUEST-DONE boot=1\n", ""},
	} {
		out := strings.Replace(umlGoodOutput, edit[0], edit[1], 1)
		if out == umlGoodOutput {
			t.Fatalf("%s: edit did not apply", name)
		}
		if bad := checkUMLCase(c, out); len(bad) == 0 {
			t.Errorf("%s: corrupted transcript accepted", name)
		}
	}
	// The killed boot of the reconnect case needs no results, only the kill.
	rc := umlCase{rx: "big", sizeMiB: 1, boots: 2, killBoot: 1}
	two := strings.Replace(umlGoodOutput, "boot=1", "boot=2", -1)
	two = strings.Replace(two, "connections=1", "connections=2", 1)
	two = "UML-HOST-BOOT boot=1 rc=137 secs=1 killed=1\n" + two
	if bad := checkUMLCase(rc, two); len(bad) != 0 {
		t.Fatalf("reconnect transcript rejected: %v", bad)
	}
	if bad := checkUMLCase(rc, strings.Replace(two, "killed=1", "killed=0", 1)); len(bad) == 0 {
		t.Error("a boot that was not killed passed as the killed one")
	}
}
