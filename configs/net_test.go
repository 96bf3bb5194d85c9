package configs

import (
	"errors"
	"strings"
	"testing"
)

func TestParseNetFlag(t *testing.T) {
	n, err := ParseNetFlag("tap=tap0")
	if err != nil {
		t.Fatal(err)
	}
	if want := DefaultNetInterface("tap0"); n.TAP != want.TAP || n.Transport != TransportPCI || n.MTU != 1500 ||
		!n.MrgRxbuf || !n.TSO || !n.Csum || !n.UFO || !n.Indirect || !n.EventIdx || n.Packed || n.MAC != nil {
		t.Fatalf("defaults: %+v", n)
	}
	n, err = ParseNetFlag("tap=t1,mac=52:54:00:aa:bb:cc,transport=mmio,mtu=9000,mrg_rxbuf=off,tso=off,ufo=off,csum=off,indirect=off,event_idx=off,packed=on")
	if err != nil {
		t.Fatal(err)
	}
	if n.MAC.String() != "52:54:00:aa:bb:cc" || n.Transport != TransportMMIO || n.MTU != 9000 ||
		n.MrgRxbuf || n.TSO || n.Csum || n.UFO || n.Indirect || n.EventIdx || !n.Packed {
		t.Fatalf("parsed: %+v", n)
	}
}

func TestParseNetFlagGuestIP(t *testing.T) {
	n, err := ParseNetFlag("tap=t0,ip=10.77.0.2/24")
	if err != nil || n.GuestIP.String() != "10.77.0.2/24" {
		t.Fatalf("%+v, %v", n.GuestIP, err)
	}
	if n, _ := ParseNetFlag("tap=t0"); n.GuestIP.IsValid() {
		t.Fatalf("no ip= gave %v", n.GuestIP)
	}
}

func TestParseNetFlagErrorsNameTheField(t *testing.T) {
	cases := map[string]string{
		"":                             "not key=value",
		"tap":                          "not key=value",
		"mac=52:54:00:00:00:01":        "tap",
		"tap=t0,tap=t1":                "given twice",
		"tap=t0,speed=fast":            "unknown key \"speed\"",
		"tap=t0,mtu=abc":               "mtu",
		"tap=t0,mtu=67":                "mtu",
		"tap=t0,mtu=70000":             "mtu",
		"tap=t0,mac=zz":                "mac",
		"tap=t0,mac=01:00:5e:00:00:01": "multicast",
		"tap=t0,transport=usb":         "transport",
		"tap=t0,tso=yes":               "tso",
		"tap=t0,csum=off":              "needs csum=on",
		"tap=averyveryverylongname":    "not a valid interface name",
		"tap=a/b":                      "not a valid interface name",
		"tap=t0,ip=10.0.0.2":           "ip=",
		"tap=t0,ip=fd00::2/64":         "IPv4",
		"tap=t0,ip=0.0.0.0/8":          "not a host address",
		"tap=t0,ip=10.0.0.2/0":         "ip=",
	}
	for in, want := range cases {
		_, err := ParseNetFlag(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseNetFlag(%q) = %v, want an error naming %q", in, err, want)
		}
	}
}

func FuzzParseNetFlag(f *testing.F) {
	f.Add("tap=tap0,mac=52:54:00:12:34:56,transport=mmio,mtu=9000")
	f.Add("tap=x,mrg_rxbuf=off,tso=off")
	f.Add("tap=,,,=")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseNetFlag(s)
		if err == nil {
			if verr := n.Validate(); verr != nil {
				t.Fatalf("ParseNetFlag(%q) accepted an invalid interface: %v", s, verr)
			}
		} else if strings.Contains(err.Error(), "\n") {
			t.Fatalf("multi-line error %q", err)
		}
	})
}

// TestNetSpecErrorKey: a field's problem is a *NetSpecError holding the
// field's key and value (flint net-backend names its flag from them),
// the tap name's too; its message is the --net one.
func TestNetSpecErrorKey(t *testing.T) {
	for in, key := range map[string]string{
		"tap=t0,mac=zz":             "mac",
		"tap=t0,queues=0":           "queues",
		"tap=t0,poll=2ms":           "poll",
		"tap=averyveryverylongname": "tap",
		"tap=t0,mtu=1,tap=x":        "mtu",
	} {
		_, err := ParseNetFlag(in)
		var se *NetSpecError
		if !errors.As(err, &se) || se.Key != key || !strings.HasPrefix(err.Error(), "--net "+`"`+in+`": `+key+"=") {
			t.Errorf("ParseNetFlag(%q) = %v (%#v), want a NetSpecError for key %q", in, err, se, key)
		}
	}
}
