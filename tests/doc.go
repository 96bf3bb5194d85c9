// Package e2e holds Flint's end-to-end tests: they build the flint binary, fetch stock
// Debian kernels and test initramfs images with the scripts in ../scripts, and boot
// them with flint, either directly on /dev/kvm (hardware virtualization) or inside the
// nested test host (scripts/nested-host.sh: QEMU TCG with an emulated AMD SVM) when
// the machine has none.
//
// The tests are slow: `go test -short` skips them, and a full run needs more than go
// test's default 10 minute timeout (use -timeout 60m, as `make e2e` does). Without a
// required tool they skip, saying why, unless the run requires everything
// (FLINT_TEST_REQUIRE=all, which `make test` sets, or CI): then a test that cannot run
// is a failure. `make setup` (scripts/setup.sh) installs every tool they use.
//
// The suites: boot_test.go (stock kernels, 1 and 2 vCPUs), net_test.go (virtio-net over
// PCI and MMIO: transport x RX mode x indirect x packed rings pairwise in six boots, MTU
// 9000, one CPU for flint, two queue pairs with the pair count changed mid-transfer:
// pings, 64 MiB each way with checksums, iperf3), config_test.go (Firecracker config
// files with a packed root ext4 drive over two boots, a read-only drive, the API socket
// driven with curl, rate-limited interfaces measured with iperf3, vsock), uml_test.go (flint net-backend driven by Debian's
// user-mode Linux through vhost-user: every RX mode, reconnects), qemu_vu_test.go (flint
// net-backend --queues 2 with QEMU (TCG) as the vhost-user frontend: the pair count changed
// between and during transfers, the driver bound again, checksums both ways), kvmpkg_test.go (the
// KVM package tests of kvm, vmm and cmd/flint and the start-up benchmark, compiled with
// `go test -c` and run in one nested host where this machine has no working /dev/kvm:
// every test there is a subtest here, and a skip there is a failure; with a working
// /dev/kvm they ran directly in `make unit`/`make race`, and only the benchmark runs),
// makerun_test.go (the README's `make run` on a pseudo-terminal: the shell, a ping and a
// web page from the host side, `exit`, status 0).
//
// Whether KVM is usable, and how, is decided in one place for every test:
// internal/testenv (CanRunTinyGuests: any working /dev/kvm, PVM included;
// CanBootStockKernels: hardware virtualization, not PVM). Each test logs the path it
// took as "flint-test-path: direct|nested|uml", which `make test`'s closing summary
// counts (internal/testsummary).
//
// The nested host (L1) itself is lost now and then (QEMU's TCG emulation of SVM): it
// wedges (soft lockups on its CPUs, flint's vCPU thread unkillable), crashes, or
// stops altogether. L1 sends a heartbeat apart from its console (nested-host.sh
// --beat: a line a second on a virtio-serial port, with every process's state every
// thirty beats), and the harness tells the two kinds of silence apart:
//
//   - L1 lost: no heartbeat for 30 s, a soft lockup that no finished boot follows, an
//     L1 kernel crash (a <0> BUG or panic line), or L1 ending without finishing its
//     job. The harness logs why and L1's last process dump, stops that L1 and runs the
//     boots that never finished again in a fresh one (up to six lost hosts per test).
//     A boot that finished is never rerun for this, whatever its result.
//   - flint hung: L1 keeps beating while a boot runs past its timeout, or while a boot
//     with a quiet limit (the network cases, whose guests print a heartbeat) prints
//     nothing. The harness asks L1 for flint's state through the control channel
//     (nested-host.sh --control: SIGUSR1 to flint, which logs its vCPUs, queues and
//     interrupts), fails the boot and never reruns it. The failed boot is the one the
//     silence was seen in (a boot that started during the dump's wait runs again), and
//     when its guest had already printed FLINT-SCRIPT-EXIT the reason says the VMM did
//     not exit, which is not a stalled guest.
//
// A boot in which the nested virtualization lost the guest's vCPU state (rerunLostStates)
// runs again too, loudly.
//
// CI keeps only the end of a failing test's output and `make test`'s summary, and a
// stalled boot's output ends in flint's goroutine dump. So every cut-off or hung boot's
// failure starts with a one-line evidence digest (digest_test.go: the guest's last
// heartbeat, guest lockups, NET-HOST-STALL, what changed between the state dumps in each
// vCPU and queue, the vCPUs that did not leave KVM_RUN or lost their state, where
// flint's threads wait), also logged just before it in lines that the summary keeps
// whole, and its output's tail leaves the goroutine dump's bulk out. A network case
// that failed its checks after net-case.sh's stall detector fired ends with the same
// digest.
//
// Environment:
//
//	FLINT_TEST_REQUIRE        "all": a test that cannot run fails instead of skipping
//	                          (`make test` sets it; CI=true implies it); "kvm": so do
//	                          the KVM package tests without /dev/kvm (set in the nested
//	                          host). See internal/testenv.
//	FLINT_CACHE               cache for kernels and images (default <repo>/.cache)
//	FLINT_BIN                 use this flint binary instead of building ./cmd/flint
//	FLINT_E2E_BOOT            "direct" or "nested" forces the boot path (default: detect)
//	FLINT_E2E_BOOT_TIMEOUT    per-boot timeout (Go duration or seconds)
//	FLINT_E2E_BOOT_ONLY       regexp: TestStockKernelBoot runs only the boots whose names match
//	FLINT_E2E_CMDLINE         guest kernel command line (default in defaultGuestCmdline)
//	FLINT_E2E_NET_MIB         MiB sent each way in every network case (default 64)
//	FLINT_E2E_NET_IPERF       seconds of iperf3 each way per network case (default 3)
//	FLINT_E2E_NET_ONLY        regexp: run only the network cases whose names match
//	FLINT_E2E_L1_CPUS         run every network case in a nested host with N vCPUs
//	FLINT_E2E_NET_CPUS        give every network case's guest N vCPUs
//	FLINT_E2E_NET_AGAIN       every network case also sends N MiB each way after iperf3
//	FLINT_E2E_HOST_CPUS       every network case confines flint and its host side to N CPUs
//	FLINT_E2E_VMM             "qemu": the network cases run QEMU (scripts/qemu-l2.sh) in the
//	                          nested host instead of flint, to measure the host's own losses
package e2e
