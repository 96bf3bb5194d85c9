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
// PCI and MMIO in every RX mode, indirect on/off, MTU 9000: pings, 64 MiB each way
// with checksums, iperf3), config_test.go (Firecracker config files with a root ext4
// drive over two boots, a read-only drive, the API socket driven with curl, rate-limited
// interfaces measured with iperf3), uml_test.go (flint net-backend driven by Debian's
// user-mode Linux through vhost-user: every RX mode, reconnects), kvmpkg_test.go (the
// KVM package tests of kvm, vmm and cmd/flint and the start-up benchmark, compiled with
// `go test -c` and run in one nested host where this machine has no working /dev/kvm:
// every test there is a subtest here, and a skip there is a failure; with a working
// /dev/kvm they ran directly in `make unit`/`make race`, and only the benchmark runs).
//
// Whether KVM is usable, and how, is decided in one place for every test:
// internal/testenv (CanRunTinyGuests: any working /dev/kvm, PVM included;
// CanBootStockKernels: hardware virtualization, not PVM). Each test logs the path it
// took as "flint-test-path: direct|nested|uml", which `make test`'s closing summary
// counts (internal/testsummary).
//
// The nested host (L1) itself occasionally wedges while flint runs a guest: soft
// lockups on both L1 CPUs, flint's vCPU thread unkillable. The harness watches L1's
// console (wedge_test.go): on a soft lockup that no finished boot follows, or a boot
// still running well past its own timeout, it logs "nested host wedged: L1 soft
// lockup in CPU#0 flint:109 at ...", stops that L1 and runs the boots that never
// finished once more in a fresh L1. A boot that finished is never rerun, whatever
// its result, and a second wedge is a test failure. An L1 kernel crash (a <0> BUG or
// panic line; QEMU 7.2's SVM emulation has been seen to hand L1 a corrupted state on
// flint's vCPU thread) is treated the same way.
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
//	FLINT_E2E_CMDLINE         guest kernel command line (default in defaultGuestCmdline)
//	FLINT_E2E_NET_MIB         MiB sent each way in every network case (default 64)
//	FLINT_E2E_NET_IPERF       seconds of iperf3 each way per network case (default 3)
//	FLINT_E2E_NET_ONLY        regexp: run only the network cases whose names match
package e2e
