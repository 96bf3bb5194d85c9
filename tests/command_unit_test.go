package e2e

import "testing"

func TestParseCmdCase(t *testing.T) {
	out := "nested: noise\nCMDCASE-RC rc=7 secs=31.5\r\nCMDCASE-OUT|6.1.0-57-cloud-amd64\nCMDCASE-OUT|raw\r\n" +
		"CMDCASE-OUT-HEX hex=7261770d0a\nCMDCASE-ERR|to-stderr\nCMDCASE-REPORT|{\"verdict\":{\"result\":\"command-failed\",\"exit_code\":7}}\n" +
		"CMDCASE-RWFILE|written\nCMDCASE-HOST ro-new=no overlay-leak=no\n"
	r, err := parseCmdCase(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.rc != 7 || r.secs != 31.5 {
		t.Errorf("rc %d secs %v, want 7 31.5", r.rc, r.secs)
	}
	if r.stdout != "6.1.0-57-cloud-amd64\nraw\n" || r.stderr != "to-stderr\n" || r.rwfile != "written\n" {
		t.Errorf("streams: stdout %q stderr %q rwfile %q", r.stdout, r.stderr, r.rwfile)
	}
	if r.outHex != "7261770d0a" || r.host["ro-new"] != "no" || r.host["overlay-leak"] != "no" {
		t.Errorf("hex %q host %v", r.outHex, r.host)
	}
	if rep := r.parseReport(t); rep.Verdict.ExitCode != 7 || rep.Verdict.Result != "command-failed" {
		t.Errorf("report %+v", rep.Verdict)
	}
	if _, err := parseCmdCase("JOB-START x\n"); err == nil {
		t.Error("output without CMDCASE-RC parsed")
	}
}
