package configs

import (
	"strings"
	"testing"
)

// TestNetQueues: --net ...,queues=N and the config file's
// flint.network-interfaces.ID.queues give an interface N queue pairs;
// the default is 1 and out-of-range counts are refused with the key named.
func TestNetQueues(t *testing.T) {
	n, err := ParseNetFlag("tap=t0")
	if err != nil || n.Queues != 1 {
		t.Fatalf("default: %d, %v", n.Queues, err)
	}
	if n, err = ParseNetFlag("tap=t0,queues=4"); err != nil || n.Queues != 4 {
		t.Fatalf("queues=4: %d, %v", n.Queues, err)
	}
	for _, bad := range []string{"0", "-1", "65", "two", ""} {
		if _, err := ParseNetFlag("tap=t0,queues=" + bad); err == nil || !strings.Contains(err.Error(), "queues") {
			t.Errorf("queues=%s: %v", bad, err)
		}
	}
	if err := (NetInterface{TAP: "t0", MTU: 1500, Queues: MaxNetQueues + 1}).Validate(); err == nil {
		t.Error("Validate accepted too many queues")
	}
}

func TestFlintNetQueues(t *testing.T) {
	doc := `{"boot-source": {"kernel_image_path": "k"}, "machine-config": {"vcpu_count": 2, "mem_size_mib": 256},
	  "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0"}, {"iface_id": "eth1", "host_dev_name": "tap1"}],
	  "flint": {"network-interfaces": {"eth0": {"queues": 2}}}}`
	c, err := DecodeVMConfig([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	nets, err := c.NetInterfaces()
	if err != nil || nets[0].Queues != 2 || nets[1].Queues != 1 {
		t.Fatalf("%+v, %v", nets, err)
	}
	for _, bad := range []string{"0", "65", `"2"`} {
		d := strings.Replace(doc, `"queues": 2`, `"queues": `+bad, 1)
		if _, err := DecodeVMConfig([]byte(d)); err == nil || !strings.Contains(err.Error(), "queues") {
			t.Errorf("queues %s: %v", bad, err)
		}
	}
}
