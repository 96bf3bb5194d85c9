package e2e

import (
	"strings"
	"testing"
)

// Outputs of passing config cases (recorded in the nested host, CFG lines only; one
// line carries a guest kernel message behind it, as the shared console sometimes
// does), and what they must show.
var (
	cfgGoodWant = cfgWant{marker: "flint-root-fda791577548df80", roMarker: "flint-ro-284c6fbdefa46776",
		token: "58834ad27f44398e15e553f55895dff5", rootImg: "root.ext4", net: true}
	cfgGood = map[string]string{
		"config/write": `CFG-HOST-SHA key=RO when=before sha256=b5d6ea933a778af2b80f90e0264912f8f7923d4e52cee3f863fe4b658f0b0a14
CFG-GUEST mode=write cpus=2 memmib=217 root=/dev/vda rootmode=rw
CFG-DISK dev=vda result=ok driver=virtio_blk bus=pci ro=0 sectors=131072 packed=1 serial=rootfs
CFG-MARKER content=flint-root-fda791577548df80
CFG-WRITE result=ok token=58834ad27f44398e15e553f55895dff5
CFG-DISK dev=vdb result=ok driver=virtio_blk bus=platform ro=1 sectors=32768 packed=0 serial=scratch
CFG-RO sysro=1 write=refused:dd:_error_writing_'/dev/vdb':_Operation_not_permitted rwmount=refused marker=flint-ro-284c6fbdefa46776
CFG-NET result=ok driver=virtio_net bus=pci mac=52:54:00:c0:f1:9e mtu=1500
CFG-GUEST-DONE
CFG-HOST-SHA key=RO when=after sha256=b5d6ea933a778af2b80f90e0264912f8f7923d4e52cee3f863fe4b658f0b0a14
CFG-HOST-METRICS {"utc_timestamp_ms":1796197237616,"uptime_ms":11302,"vcpu":[{"exit_io":38468,"exit_mmio":15,"exit_intr":2,"exit_other":0},{"exit_io":8339,"exit_mmio":251,"exit_intr":5,"exit_other":0}],"net":{"eth0":{"host_dev_name":"flcfg0","rx_bytes":0,"rx_packets":0,"tx_bytes":0,"tx_packets":0,"rx_drops":{"oversize":0,"short":0,"bad_header":0,"bad_chain":0,"malformed_chain":0,"backend_error":0},"tx_drops":{"short":0,"backend_refused":0,"malformed_chain":0},"rx_waits":1,"tx_waits":0,"rx_interrupts":0,"tx_interrupts":0,"rx_rate_limiter_throttled":0,"tx_rate_limiter_throttled":0,"broken_queues":0}},"block":{"rootfs":{"read_ops":13,"read_bytes":17408,"write_ops":14,"write_bytes":24576,"flushes":12,"io_errors":0,"host_errors":0,"unsupported":0,"bad_chains":0,"malformed_chains":0,"rate_limiter_throttled":0,"interrupts":31},"scratch":{"read_ops":14,"read_bytes":19456,"write_ops":0,"write_bytes":0,"flushes":0,"io_errors":0,"host_errors":0,"unsupported":0,"bad_chains":0,"malformed_chains":0,"rate_limiter_throttled":0,"interrupts":11}}}
CFG-HOST-FLINT rc=0
`,
		"config/read": `CFG-GUEST mode=read cpus=1 memmib=217 root=/dev/vda rootmode=rw
CFG-DISK dev=vda result=ok driver=virtio_blk bus=platform ro=0 sectors=131072 packed=1 serial=rootfs
CFG-MARKER content=flint-root-fda791577548df80
CFG-READ token=58834ad27f44398e15e553f55895dff5
CFG-GUEST-DONE
CFG-HOST-FLINT rc=0
`,
		"api": `CFG-GUEST mode=api cpus=2 memmib=217 root=/dev/vda rootmode=rw
CFG-DISK dev=vda result=ok driver=virtio_blk bus=pci ro=0 sectors=131072 serial=rootfs
CFG-MARKER content=flint-root-fda791577548df80
CFG-READ token=58834ad27f44398e15e553f55895dff5
CFG-API-READY
CFG-API i=1 GET / code=200 body={"id":"anonymous-instance","state":"Not started","vmm_version":"dev","app_name":"Flint"} 
CFG-API i=2 PUT /machine-config code=400 body={"fault_message":"unknown key \"vcpu_bogus\" at machine-config (known keys: vcpu_count, mem_size_mib, smt, track_dirty_pages, huge_pages, cpu_template)"} 
CFG-API i=3 PUT /boot-source code=204 body=
CFG-API i=4 PUT /machine-config code=204 body=
CFG-API i=5 GET /machine-config code=200 body={"vcpu_count":2,"mem_size_mib":256,"smt":false,"track_dirty_pages":false,"huge_pages":"None"} 
CFG-API i=6 PUT /drives/rootfs code=204 body=
CFG-API i=7 PUT /actions code=204 body=
CFG-API i=8 GET / code=200 body={"id":"anonymous-instance","state":"Running","vmm_version":"dev","app_name":"Flint"} 
CFG-API i=9 GET /vm/config code=200 body={"boot-source":{"kernel_image_path":"/payload/0-vmlinuz","initrd_path":"/payload/1-config.cpio.gz","boot_args":"console=ttyS0 flintcfg.mode=api"},"machine-config":{"vcpu_count":2,"mem_size_mib":256},"network-interfaces":[],"drives":[{"drive_id":"rootfs","path_on_host":"/payload/3-root.ext4","is_root_device":true,"is_read_only":false}]} 
CFG-API i=10 await - code=ok body=CFG-API-READY
CFG-API i=11 PUT /actions code=204 body=
CFG-HOST-FLINT rc=0
`,
		"vsock": `CFG-VIRTIO dev=vsock driver=vmw_vsock_virtio_transport bus=pci
CFG-VIRTIO dev=rng driver=virtio_rng bus=platform
CFG-RNG current=virtio_rng.0 bytes=64
CFG-VSOCK-REFUSED side=guest port=5999 result=ok
CFG-VSOCK side=guest init=host id=3 kind=vanish sent=65536 sent_sha=1f25844323a74ba43109c54247f7b79b03b2831009fc8c9bf59acc3520599ca4 recv=131072 recv_sha=319236497e903dd05abe04e1cc3d5c32778593c61645f5b56cfc3b736c34822e result=err:write:broken_pipe
CFG-VSOCK side=guest init=guest id=3 kind=vanish sent=131072 sent_sha=0b282b8f0cc5f2b4136eea0ccb3245c7b4b928c26fe5dd3555637a57d884a928 recv=0 recv_sha=- result=vanished
CFG-VSOCK side=guest init=host id=1 kind=normal sent=524288 sent_sha=36d7417d813c0a596a46d9ac0b3fbc011d6685ca01294cf657af86d09d1ae561 recv=524288 recv_sha=b6f404d3bae52e86ff80769034b3a0c61433a69b5c60257a3b8cae6e6c67c028 result=ok
CFG-VSOCK side=guest init=host id=0 kind=normal sent=524288 sent_sha=b84d2eaa21a2639bd7041adb81c7d740bcddf4e90d5886e3e7409e968044c85f recv=524288 recv_sha=46bc4a9f9d7b68407c12290655e72788e1fbf735b10e4b54052e142b90886251 result=ok
CFG-VSOCK side=guest init=guest id=0 kind=normal sent=524288 sent_sha=908480a43cf59563de70c6ba80a91be6643ed9117f1ed2f0102c48d773b88e03 recv=524288 recv_sha=486a00cdc2dccc9959f8a9711bf474b92d19af64b8a8990de00915efa9682073 result=ok
CFG-VSOCK side=guest init=host id=2 kind=normal sent=524288 sent_sha=b3ec1aeed11ded04303f812dc9a325138c8a2a50b56ce13faef454b9fe8a0e2c recv=524288 recv_sha=03ed5bfb61d98d02ba03f47617627ae1f9d7c90f6d3bbb26f4d110d2422100bc result=ok
CFG-VSOCK side=guest init=guest id=1 kind=normal sent=524288 sent_sha=dfb2a883356a2dcd986399c2cbb7f64488940e575464f05c736f8e6bc84ee7f4 recv=524288 recv_sha=f866460e0899c2cfa4c4cf2edf1ce56a8c448533f66132275f356fb305a85eca result=ok
CFG-VSOCK side=guest init=guest id=2 kind=normal sent=524288 sent_sha=dd33ef8e5b82fa9ad3afa0bdda609732de607e89724dd095d5529fe0e3c8d67f recv=524288 recv_sha=73c4d6565418f781d80b948e1f6733d4b907c8ae456e3e3f098c3b4c9fe33a01 result=ok
CFG-VSOCK-DONE side=guest result=ok
CFG-GUEST-DONE
CFG-HOST-VSOCK gone=1
CFG-VSOCK-REFUSED side=host port=5999 result=ok
CFG-VSOCK side=host init=host id=3 kind=vanish sent=131072 sent_sha=319236497e903dd05abe04e1cc3d5c32778593c61645f5b56cfc3b736c34822e recv=0 recv_sha=- result=vanished
CFG-VSOCK side=host init=guest id=3 kind=vanish sent=491520 sent_sha=0de4b7349f9bff483251854448af918ccef39473e14d3d26e7dec85bf064ece2 recv=131072 recv_sha=0b282b8f0cc5f2b4136eea0ccb3245c7b4b928c26fe5dd3555637a57d884a928 result=err:read:read_unix_/tmp/flint-cfg.etbgY7/v.sock_6000->@:_read:_connection_reset_by_peer
CFG-VSOCK side=host init=host id=1 kind=normal sent=524288 sent_sha=b6f404d3bae52e86ff80769034b3a0c61433a69b5c60257a3b8cae6e6c67c028 recv=524288 recv_sha=36d7417d813c0a596a46d9ac0b3fbc011d6685ca01294cf657af86d09d1ae561 result=ok
CFG-VSOCK side=host init=host id=0 kind=normal sent=524288 sent_sha=46bc4a9f9d7b68407c12290655e72788e1fbf735b10e4b54052e142b90886251 recv=524288 recv_sha=b84d2eaa21a2639bd7041adb81c7d740bcddf4e90d5886e3e7409e968044c85f result=ok
CFG-VSOCK side=host init=guest id=0 kind=normal sent=524288 sent_sha=486a00cdc2dccc9959f8a9711bf474b92d19af64b8a8990de00915efa9682073 recv=524288 recv_sha=908480a43cf59563de70c6ba80a91be6643ed9117f1ed2f0102c48d773b88e03 result=ok
CFG-VSOCK side=host init=host id=2 kind=normal sent=524288 sent_sha=03ed5bfb61d98d02ba03f47617627ae1f9d7c90f6d3bbb26f4d110d2422100bc recv=524288 recv_sha=b3ec1aeed11ded04303f812dc9a325138c8a2a50b56ce13faef454b9fe8a0e2c result=ok
CFG-VSOCK side=host init=guest id=1 kind=normal sent=524288 sent_sha=f866460e0899c2cfa4c4cf2edf1ce56a8c448533f66132275f356fb305a85eca recv=524288 recv_sha=dfb2a883356a2dcd986399c2cbb7f64488940e575464f05c736f8e6bc84ee7f4 result=ok
CFG-VSOCK side=host init=guest id=2 kind=normal sent=524288 sent_sha=73c4d6565418f781d80b948e1f6733d4b907c8ae456e3e3f098c3b4c9fe33a01 recv=524288 recv_sha=dd33ef8e5b82fa9ad3afa0bdda609732de607e89724dd095d5529fe0e3c8d67f result=ok
CFG-VSOCK-DONE side=host result=ok
CFG-HOST-FLINT rc=0
`,
		"ratelimit": `CFG-GUEST mode=read cpus=2 memmib=217 root=/dev/vda rootmode=ro
CFG-DISK dev=vda result=ok driver=virtio_blk bus=pci ro=1 sectors=131072 serial=rootfs[   10.668843] hrtimer: interrupt took 12263738 ns
CFG-MARKER content=flint-root-fda791577548df80
CFG-READ token=58834ad27f44398e15e553f55895dff5
CFG-IPERF if=free dev=eth0 dir=tx rc=0 mbps=79.2
CFG-IPERF if=free dev=eth0 dir=rx rc=0 mbps=208
CFG-IPERF if=limited dev=eth1 dir=tx rc=0 mbps=16.9
CFG-IPERF if=limited dev=eth1 dir=rx rc=0 mbps=12.4
CFG-GUEST-DONE
CFG-HOST-METRICS {"utc_timestamp_ms":1796197279062,"uptime_ms":40735,"vcpu":[{"exit_io":39942,"exit_mmio":339,"exit_intr":3,"exit_other":0},{"exit_io":14018,"exit_mmio":14,"exit_intr":8,"exit_other":0}],"net":{"free":{"host_dev_name":"flrl1","rx_bytes":467285551,"rx_packets":13484,"tx_bytes":325337832,"tx_packets":8185,"rx_drops":{"oversize":0,"short":0,"bad_header":0,"bad_chain":0,"malformed_chain":0,"backend_error":0},"tx_drops":{"short":0,"backend_refused":0,"malformed_chain":0},"rx_waits":6,"tx_waits":0,"rx_interrupts":3502,"tx_interrupts":3815,"rx_rate_limiter_throttled":0,"tx_rate_limiter_throttled":0,"broken_queues":0},"limited":{"host_dev_name":"flrl0","rx_bytes":11611586,"rx_packets":2578,"tx_bytes":12993785,"tx_packets":2365,"rx_drops":{"oversize":0,"short":0,"bad_header":0,"bad_chain":0,"malformed_chain":0,"backend_error":0},"tx_drops":{"short":0,"backend_refused":0,"malformed_chain":0},"rx_waits":1,"tx_waits":0,"rx_interrupts":2370,"tx_interrupts":1850,"rx_rate_limiter_throttled":1719,"tx_rate_limiter_throttled":680,"broken_queues":0}},"block":{"rootfs":{"read_ops":10,"read_bytes":14336,"write_ops":0,"write_bytes":0,"flushes":0,"io_errors":0,"host_errors":0,"unsupported":0,"bad_chains":0,"malformed_chains":0,"rate_limiter_throttled":0,"interrupts":9}}}
CFG-HOST-FLINT rc=0
`,
	}
)

func checkCfgOutput(name, out string, rc int) []string {
	var rec recorder
	checkConfigCase(&rec, name, &result{output: out, rc: rc}, cfgGoodWant)
	return rec.errs
}

// TestConfigChecks shows that each assertion of TestConfigLaunches fails when the
// behaviour it stands for breaks, and that good runs pass.
func TestConfigChecks(t *testing.T) {
	for name, out := range cfgGood {
		if errs := checkCfgOutput(name, out, 0); len(errs) > 0 {
			t.Errorf("%s: good output rejected: %q", name, errs)
		}
	}
	bad := []struct {
		cs, name, old, new string
		rc                 int
	}{
		{cs: "config/write", name: "flint failed", rc: 1},
		{cs: "config/write", name: "host setup failed", old: "CFG-GUEST-DONE", new: "CFG-HOST-SETUP result=fail reason=x"},
		{cs: "config/write", name: "vCPUs", old: "cpus=2", new: "cpus=1"},
		{cs: "config/write", name: "no root=", old: "root=/dev/vda", new: "root=-"},
		{cs: "config/write", name: "memory", old: "memmib=217", new: "memmib=512"},
		{cs: "config/write", name: "root drive transport", old: "driver=virtio_blk bus=pci", new: "driver=virtio_blk bus=platform"},
		{cs: "config/write", name: "read-only drive missing", old: "CFG-DISK dev=vdb", new: "CFG-DISK dev=vdc"},
		{cs: "config/write", name: "marker", old: "content=flint-root-fda791577548df80", new: "content=cat:_can't_open"},
		{cs: "config/write", name: "write failed", old: "CFG-WRITE result=ok", new: "CFG-WRITE result=fail"},
		{cs: "config/write", name: "read-only drive writable", old: "ro=1", new: "ro=0"},
		{cs: "config/write", name: "kernel ro flag", old: "sysro=1", new: "sysro=0"},
		{cs: "config/write", name: "raw write allowed", old: "write=refused:dd:_error_writing_'/dev/vdb':_Operation_not_permitted", new: "write=allowed"},
		{cs: "config/write", name: "rw mount allowed", old: "rwmount=refused", new: "rwmount=allowed"},
		{cs: "config/write", name: "read-only marker", old: "marker=flint-ro-284c6fbdefa46776", new: "marker=mount-failed"},
		{cs: "config/write", name: "read-only image changed", old: "when=after sha256=b5", new: "when=after sha256=c5"},
		{cs: "config/write", name: "MAC", old: "mac=52:54:00:c0:f1:9e", new: "mac=52:54:00:12:34:56"},
		{cs: "config/write", name: "no eth0", old: "CFG-NET result=ok", new: "CFG-NET result=fail"},
		{cs: "config/write", name: "no metrics", old: "CFG-HOST-METRICS ", new: "CFG-HOST-NOMETRICS "},
		{cs: "config/write", name: "sync not flushed", old: `"write_bytes":24576,"flushes":12`, new: `"write_bytes":24576,"flushes":0`},
		{cs: "config/write", name: "read-only drive written", old: `"scratch":{"read_ops":14,"read_bytes":19456,"write_ops":0`, new: `"scratch":{"read_ops":14,"read_bytes":19456,"write_ops":1`},
		{cs: "config/write", name: "one vCPU in metrics", old: `},{"exit_io":`, new: `}],"x":[{"exit_io":`},
		{cs: "config/write", name: "interface missing from metrics", old: `"eth0":{"host_dev_name":"flcfg0"`, new: `"eth9":{"host_dev_name":"flcfg0"`},
		{cs: "config/read", name: "token lost", old: "CFG-READ token=58834ad27f44398e15e553f55895dff5", new: "CFG-READ token=cat:_can't_open_'/mnt/token'"},
		{cs: "config/read", name: "token cut", old: "token=58834ad27f44398e15e553f55895dff5", new: "token=58834ad27f44398e15e553f55895df"},
		{cs: "config/read", name: "root drive transport", old: "bus=platform", new: "bus=pci"},
		{cs: "config/write", name: "root drive not packed", old: "packed=1", new: "packed=0"},
		{cs: "config/write", name: "read-only drive packed", old: "packed=0", new: "packed=1"},
		{cs: "config/read", name: "root drive not packed", old: "packed=1", new: "packed=-"},
		{cs: "api", name: "state before start", old: `"state":"Not started"`, new: `"state":"Running"`},
		{cs: "api", name: "unknown key accepted", old: "machine-config code=400", new: "machine-config code=204"},
		{cs: "api", name: "unknown key not named", old: `unknown key \"vcpu_bogus\"`, new: `unknown key`},
		{cs: "api", name: "boot-source refused", old: "boot-source code=204", new: "boot-source code=400"},
		{cs: "api", name: "machine-config not applied", old: `{"vcpu_count":2,"mem_size_mib":256,"smt"`, new: `{"vcpu_count":1,"mem_size_mib":128,"smt"`},
		{cs: "api", name: "InstanceStart failed", old: "i=7 PUT /actions code=204", new: "i=7 PUT /actions code=400"},
		{cs: "api", name: "not running", old: `"state":"Running"`, new: `"state":"Not started"`},
		{cs: "api", name: "vm/config without the drive", old: `"drives":[{"drive_id":"rootfs","path_on_host":"/payload/3-root.ext4","is_root_device":true,"is_read_only":false}]`, new: `"drives":[]`},
		{cs: "api", name: "guest never ready", old: "await - code=ok", new: "await - code=timeout"},
		{cs: "api", name: "SendCtrlAltDel refused", old: "i=11 PUT /actions code=204", new: "i=11 PUT /actions code=400"},
		{cs: "api", name: "a reply missing", old: "CFG-API i=6 PUT /drives/rootfs code=204 body=\n", new: ""},
		{cs: "api", name: "token lost", old: "CFG-READ token=58834ad27f44398e15e553f55895dff5", new: "CFG-READ token=-"},
		{cs: "vsock", name: "flint failed", rc: 1},
		{cs: "vsock", name: "vsock not on PCI", old: "driver=vmw_vsock_virtio_transport bus=pci", new: "driver=vmw_vsock_virtio_transport bus=platform"},
		{cs: "vsock", name: "no rng driver", old: "dev=rng driver=virtio_rng", new: "dev=rng driver=-"},
		{cs: "vsock", name: "rng not the source", old: "current=virtio_rng.0", new: "current=none"},
		{cs: "vsock", name: "no entropy read", old: "bytes=64", new: "bytes=0"},
		{cs: "vsock", name: "guest to host data corrupted", old: "recv_sha=908480a4", new: "recv_sha=008480a4"},
		{cs: "vsock", name: "host to guest data short", old: "recv=524288 recv_sha=46bc4a9f", new: "recv=524287 recv_sha=46bc4a9f"},
		{cs: "vsock", name: "a connection end missing", old: "CFG-VSOCK side=guest init=guest id=2 ", new: "CFG-VSOCKX side=guest init=guest id=2 "},
		{cs: "vsock", name: "an end failed", old: "result=ok\nCFG-VSOCK side=host init=host id=0", new: "result=err:read:x\nCFG-VSOCK side=host init=host id=0"},
		{cs: "vsock", name: "vanish not seen", old: "result=err:read:read_unix_", new: "result=ok read_unix_"},
		{cs: "vsock", name: "vanishing end stayed", old: "recv=0 recv_sha=- result=vanished\nCFG-VSOCK side=guest init=host id=1", new: "recv=0 recv_sha=- result=ok\nCFG-VSOCK side=guest init=host id=1"},
		{cs: "vsock", name: "refused port connected", old: "side=host port=5999 result=ok", new: "side=host port=5999 result=fail:connected"},
		{cs: "vsock", name: "guest probe timed out", old: "CFG-VSOCK-DONE side=guest result=ok", new: "CFG-VSOCK-DONE side=guest result=timeout"},
		{cs: "vsock", name: "socket left behind", old: "gone=1", new: "gone=0"},
		{cs: "vsock", name: "guest script unfinished", old: "CFG-GUEST-DONE\n", new: ""},
		{cs: "ratelimit", name: "tx over the limit", old: "dir=tx rc=0 mbps=16.9", new: "dir=tx rc=0 mbps=18.8"},
		{cs: "ratelimit", name: "rx under the limit", old: "dir=rx rc=0 mbps=12.4", new: "dir=rx rc=0 mbps=11.0"},
		{cs: "ratelimit", name: "directions swapped", old: "dir=tx rc=0 mbps=16.9", new: "dir=tx rc=0 mbps=12.5"},
		{cs: "ratelimit", name: "unlimited no faster", old: "dir=tx rc=0 mbps=79.2", new: "dir=tx rc=0 mbps=20.0"},
		{cs: "ratelimit", name: "iperf3 failed", old: "dir=rx rc=0 mbps=12.4", new: "dir=rx rc=1 mbps=-"},
		{cs: "ratelimit", name: "limiter never throttled", old: `"rx_rate_limiter_throttled":1719`, new: `"rx_rate_limiter_throttled":0`},
		{cs: "ratelimit", name: "unlimited interface throttled", old: `"tx_rate_limiter_throttled":0`, new: `"tx_rate_limiter_throttled":5`},
		{cs: "ratelimit", name: "no traffic counted", old: `"rx_bytes":467285551`, new: `"rx_bytes":0`},
		{cs: "ratelimit", name: "no measurement", old: "CFG-IPERF if=limited dev=eth1 dir=rx rc=0 mbps=12.4\n", new: ""},
	}
	for _, c := range bad {
		out := cfgGood[c.cs]
		if c.old != "" {
			if !strings.Contains(out, c.old) {
				t.Fatalf("%s/%s: %q is not in the good output", c.cs, c.name, c.old)
			}
			out = strings.Replace(out, c.old, c.new, 1)
		}
		if errs := checkCfgOutput(c.cs, out, c.rc); len(errs) == 0 {
			t.Errorf("%s/%s: bad output passed", c.cs, c.name)
		} else {
			t.Logf("%s/%s: %s", c.cs, c.name, errs[0])
		}
	}
}
