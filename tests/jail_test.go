package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The jailed VM of issue 13 (item 2): flint run --jail DIR --uid U --gid G.
const (
	jailUID, jailGID = 1000, 1000
	jailTAP          = "flj0"
	jailGuestMAC     = "52:54:00:c0:f1:a1"
	jailHost         = "10.0.3.1"
	jailGuest        = "10.0.3.2"
	jailIperfSecs    = 2
)

// jailWrapper is what config-case.sh runs as its flint: it makes an empty
// jail directory and the TAP flint will use, owned by the unprivileged uid
// (ip tuntap add ... user U: the way to give an unprivileged VMM a TAP),
// runs the real flint with --jail, and once flint's jailed child has its
// seccomp filter (so it is past the jail) prints what /proc says about
// that child: its ids, capability sets, no_new_privs, seccomp mode, pid
// namespace (NSpid ends in 1), and whether its mount and IPC namespaces
// differ from the host's. Then it removes the TAP and the directory and
// exits with flint's status.
const jailWrapper = `#!/bin/sh
uid=%d gid=%d tap=%s flint=%s
PATH=/usr/local/bin:$PATH:/usr/sbin:/sbin
jail=$(mktemp -d "${TMPDIR:-/tmp}/flint-jail.XXXXXX") || { echo "CFG-JAIL-TAP result=fail reason=mktemp"; exit 1; }
chmod 755 "$jail"
# iproute2's ip by its path: a busybox sh runs its own ip applet (no tuntap) first.
IP=ip
for d in /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
	if [ -x "$d/ip" ] && "$d/ip" -V 2>&1 | grep -q iproute2; then IP=$d/ip; break; fi
done
if "$IP" tuntap add dev "$tap" mode tap user "$uid" group "$gid" vnet_hdr; then
	echo "CFG-JAIL-TAP result=ok user=$(cat /sys/class/net/$tap/owner) group=$(cat /sys/class/net/$tap/group)"
else
	echo "CFG-JAIL-TAP result=fail reason=ip-tuntap-add"
fi
"$flint" "$@" --jail "$jail" --uid "$uid" --gid "$gid" &
fpid=$!
(
	i=0
	while [ $i -lt 2400 ] && kill -0 $fpid 2>/dev/null; do
		for c in $(cat /proc/$fpid/task/*/children 2>/dev/null); do
			s=/proc/$c/status
			grep -q '^Seccomp:[[:space:]]*2' "$s" 2>/dev/null || continue
			ns() { if [ "$(readlink /proc/$c/ns/$1)" = "$(readlink /proc/self/ns/$1)" ]; then echo host; else echo new; fi; }
			kv=$(awk '/^(Uid|Gid|Groups|CapEff|CapPrm|CapBnd|CapAmb|NoNewPrivs|Seccomp|NSpid):/ {
				k = tolower(substr($1, 1, length($1) - 1)); v = ""
				for (i = 2; i <= NF; i++) v = v (i > 2 ? "," : "") $i
				printf "%%s=%%s ", k, v }' "$s")
			echo "CFG-JAIL-CHILD result=ok ${kv}mnt=$(ns mnt) ipc=$(ns ipc) root=$(readlink /proc/$c/root)"
			exit 0
		done
		sleep 0.25
		i=$((i + 1))
	done
	echo "CFG-JAIL-CHILD result=fail reason=no-jailed-child-with-a-filter"
) &
wpid=$!
wait $fpid
rc=$?
wait $wpid
"$IP" tuntap del dev "$tap" mode tap 2>/dev/null
rmdir "$jail"
exit $rc
`

// jailedBoot is one boot of the stock cloud kernel by a jailed flint
// (config-case.sh with a Firecracker config file; the guest side is
// config-guest.sh): a writable root drive the guest mounts, writes a token
// to and unmounts (the image's SHA-256 must change), and a network
// interface on a TAP owned by the unprivileged uid, over which the guest
// pings the host and runs iperf3 both ways. It returns the boot and the
// check of its result, so that the boot can share a nested host with
// others (TestStockKernelBoot runs it, jailedBootIfReady).
func jailedBoot(t *testing.T, e *env) (boot, func(t *testing.T, r *result)) {
	t.Helper()
	kernels := e.kernels(t)
	dir := t.TempDir()
	guestTools := filepath.Join(dir, "guest-tools")
	e.script(t, "mknet-tools.sh", "-o", guestTools, "iperf3")
	initrd := e.initramfs(t, "jail",
		"--script", filepath.Join(e.root, "scripts", "config-guest.sh"),
		"--modules", filepath.Join(e.cache, "kernels", "cloud", "modules"),
		"--load", "virtio_pci virtio_blk virtio_net",
		"--extra", guestTools)
	marker := "flint-jail-" + randomToken(t, 8)
	token := randomToken(t, 16)
	rootImg := filepath.Join(dir, "jailroot.ext4")
	mkExt4(t, rootImg, 64, marker)

	timeout := e.bootTimeout(t) + 60*time.Second // iperf3 both ways on top of a boot
	flintTimeout := int((timeout - 30*time.Second) / time.Second)
	cfg := writeJSON(t, dir, "jail.json", obj{
		"boot-source":    obj{"kernel_image_path": "@KERNEL@", "initrd_path": "@INITRD@", "boot_args": "@CMDLINE@"},
		"machine-config": obj{"vcpu_count": 2, "mem_size_mib": 256},
		"drives": []obj{{"drive_id": "rootfs", "path_on_host": "@ROOT@", "is_root_device": true,
			"is_read_only": false, "cache_type": "Writeback"}},
		"network-interfaces": []obj{{"iface_id": "eth0", "host_dev_name": jailTAP, "guest_mac": jailGuestMAC}},
		"flint":              obj{"timeout": fmt.Sprintf("%ds", flintTimeout)},
	})
	flint := e.flint
	if !e.direct {
		flint = "/usr/bin/flint"
	}
	wrapper := filepath.Join(dir, "jailflint.sh")
	if err := os.WriteFile(wrapper, []byte(fmt.Sprintf(jailWrapper, jailUID, jailGID, jailTAP, flint)), 0o755); err != nil {
		t.Fatal(err)
	}
	caseScript := filepath.Join(e.root, "scripts", "config-case.sh")
	wrap := []string{"sh", caseScript, "--config", cfg, "--subst", "ROOT", rootImg, "--sha", "ROOT",
		"--flint-timeout", strconv.Itoa(flintTimeout), "--iperf3", "--tap", jailTAP, jailHost + "/24"}
	files := []string{caseScript, cfg, rootImg, wrapper}
	if !e.direct {
		hostTools := filepath.Join(dir, "host-tools")
		e.script(t, "mknet-tools.sh", "-o", hostTools, "iperf3", "ip")
		ko := tunModule(t, e.cache)
		wrap = append(wrap, "--tools", hostTools, "--tun-ko", ko)
		files = append(files, hostTools, ko)
	}
	// config-case.sh runs the first word after "--" as flint.
	wrap = append(wrap, "--", wrapper)
	b := boot{
		name:   "jailed/cloud",
		kernel: kernels["cloud"],
		initrd: initrd,
		cpus:   2,
		memMiB: 256,
		cmdline: fmt.Sprintf("%s flintcfg.mode=write flintcfg.token=%s flintcfg.net=1 flintcfg.ifs=eth0@%s@%s/24@%s flintcfg.iperf=%d",
			guestCmdline(), token, jailGuestMAC, jailGuest, jailHost, jailIperfSecs),
		timeout: timeout,
		wrap:    wrap,
		files:   files,
		quiet:   120 * time.Second,
	}
	return b, func(t *testing.T, r *result) { checkJailed(t, r, marker, token) }
}

// checkJailed checks the jailed boot: flint exited 0 having run as the
// unprivileged uid with nothing left (no capabilities, no_new_privs, the
// seccomp filter, its own pid, mount and IPC namespaces), and the guest's
// disk and network worked.
func checkJailed(t *testing.T, r *result, marker, token string) {
	t.Helper()
	m := parseCfg(r.output)
	if r.rc != 0 {
		t.Errorf("exit status %d, want 0 (the jailed flint's, through the launcher and config-case.sh)", r.rc)
	}
	checkKV(t, m, "CFG-JAIL-TAP", "result", "ok")
	checkKV(t, m, "CFG-JAIL-TAP", "user", strconv.Itoa(jailUID))
	c := last(m, "CFG-JAIL-CHILD")
	t.Logf("jailed flint: %s", c.line)
	ids := func(id int) string { s := strconv.Itoa(id); return s + "," + s + "," + s + "," + s }
	for k, want := range map[string]string{
		"result": "ok", "uid": ids(jailUID), "gid": ids(jailGID), "groups": "",
		"capeff": "0000000000000000", "capprm": "0000000000000000", "capbnd": "0000000000000000", "capamb": "0000000000000000",
		"nonewprivs": "1", "seccomp": "2", "mnt": "new", "ipc": "new",
	} {
		checkKV(t, m, "CFG-JAIL-CHILD", k, want)
	}
	if ns := c.kv["nspid"]; !strings.HasSuffix(ns, ",1") {
		t.Errorf("jailed flint's NSpid %q: not pid 1 of a pid namespace of its own", ns)
	}
	// The disk: mounted, written, unmounted; the image changed.
	checkCfgDisk(t, m, "vda", "pci", "0")
	checkKV(t, m, "CFG-MARKER", "content", marker)
	checkKV(t, m, "CFG-WRITE", "result", "ok")
	checkKV(t, m, "CFG-WRITE", "token", token)
	sha := map[string]string{}
	for _, l := range m["CFG-HOST-SHA"] {
		if l.kv["key"] == "ROOT" {
			sha[l.kv["when"]] = l.kv["sha256"]
		}
	}
	if sha["before"] == "" || sha["before"] == sha["after"] {
		t.Errorf("root image SHA-256 before %q after %q: the guest's write did not reach it", sha["before"], sha["after"])
	}
	// The network: virtio_net up, the host pinged, iperf3 both ways.
	checkKV(t, m, "CFG-NET", "result", "ok")
	checkKV(t, m, "CFG-NET", "driver", "virtio_net")
	checkKV(t, m, "CFG-HOST-TAP", "result", "ok")
	dirs := map[string]bool{}
	for _, l := range m["CFG-IPERF"] {
		mbps, _ := strconv.ParseFloat(l.kv["mbps"], 64)
		t.Logf("iperf3: %s", l.line)
		if l.kv["rc"] != "0" || mbps <= 0 {
			t.Errorf("iperf3 %s failed: %s", l.kv["dir"], l.line)
		}
		dirs[l.kv["dir"]] = true
	}
	if !dirs["tx"] || !dirs["rx"] {
		t.Errorf("iperf3 ran %v, want tx and rx", dirs)
	}
	if _, ok := m["CFG-GUEST-DONE"]; !ok {
		t.Errorf("the guest script did not finish")
	}
	if t.Failed() {
		t.Logf("last 100 lines of output:\n%s", tail(r.output, 100))
	}
}

// jailedBootIfReady is jailedBoot for TestStockKernelBoot's nested host:
// the jailed boot with the check of its result, or ok false (after a
// logged reason; a failure when the run requires everything) when this
// machine lacks what it needs.
func jailedBootIfReady(t *testing.T, e *env) (b boot, check func(*testing.T, *result), ok bool) {
	t.Helper()
	var missing []string
	for _, tool := range []string{"iperf3", "ip", "ldd"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if _, err := os.Stat(mkfsExt4()); err != nil {
		missing = append(missing, "mkfs.ext4 (Debian package e2fsprogs)")
	}
	if e.direct && os.Geteuid() != 0 {
		missing = append(missing, "root (the jailed boot starts flint as root, which drops to an unprivileged uid, and makes a TAP)")
	}
	if len(missing) > 0 {
		msg := "no jailed boot: missing " + strings.Join(missing, ", ")
		if ciMode() {
			t.Fatal(msg + "; the run requires everything, so this is a failure")
		}
		t.Log(msg)
		return boot{}, nil, false
	}
	b, check = jailedBoot(t, e)
	return b, check, true
}
