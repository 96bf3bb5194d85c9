# Flint: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
export PATH := $(PATH):/usr/local/go/bin
BIN := bin/flint
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.Version=$(VERSION)
# The suite's Go packages, without the slow end-to-end tests under tests/.
UNIT_PKGS := $(shell $(GO) list ./... 2>/dev/null | grep -v /tests$$)
# go test -json output of the last unit, race and e2e runs, for make test's summary.
RESULTS := $(CURDIR)/.cache/test-results
# Runs go test -json with readable output and keeps the JSON (internal/testsummary).
TESTSUMMARY := $(CURDIR)/.cache/bin/testsummary
# make test's phases, in order.
TEST_PHASES := vet fmt-check unit race fuzz-short e2e

.PHONY: all build setup run test unit e2e race fuzz-short bench bench-net vet fmt-check clean testsummary

all: build

## build: a static flint binary in bin/ (no cgo: it also runs inside the nested test host)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags urfave_cli_no_docs -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/flint

## setup: install what make test and make run need when it is missing (Debian packages,
## stock kernels, Go modules); prints nothing when everything is there
setup:
	@scripts/setup.sh

## run: boot the stock Debian cloud kernel into a busybox shell on this terminal
## (RUN_ARGS passes options to scripts/run-nested-shell.sh, e.g. RUN_ARGS='--kernel amd64 --cpus 1')
run: setup
	scripts/run-nested-shell.sh $(RUN_ARGS)

## test: everything CI runs: static checks, unit and KVM tests, a short fuzz pass, stock-kernel
## boot, network, disk/config/API and UML tests; every phase runs, then a summary of what ran
## where (each phase's output is kept in .cache/test-results/PHASE.log, and a phase that failed
## without a failed test shows its end there). FLINT_TEST_REQUIRE=all: a test that cannot run here
## fails (internal/testenv).
test: export FLINT_TEST_REQUIRE := all
test: export FUZZ_ROTATE := 10
test: setup testsummary
	@rm -rf $(RESULTS) && mkdir -p $(RESULTS)
	@set -o pipefail; rc=0; for phase in $(TEST_PHASES); do \
		echo "==== make test: $$phase"; \
		if $(MAKE) --no-print-directory $$phase 2>&1 | tee $(RESULTS)/$$phase.log; then echo "$$phase ok" >>$(RESULTS)/phases; \
		else rc=1; echo "$$phase FAILED" >>$(RESULTS)/phases; echo "==== make test: $$phase FAILED"; fi; \
	done; \
	if [ $$rc = 0 ]; then echo "make test: PASS"; else echo "make test: FAIL ($$(grep -c FAILED $(RESULTS)/phases) phase(s) failed)"; fi; \
	$(TESTSUMMARY) report $(RESULTS); \
	exit $$rc

testsummary:
	@CGO_ENABLED=0 $(GO) build -o $(TESTSUMMARY) ./internal/testsummary

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## unit, race: the packages' tests; without a working /dev/kvm the KVM tests in kvm, vmm and
## cmd/flint skip (make test runs them in the nested test host: tests/kvmpkg_test.go). The boot
## package parses and loads a real kernel: FLINT_KERNEL, by default the cached stock kernel.
STOCK_KERNEL := $(CURDIR)/.cache/kernels/cloud/vmlinuz
unit: testsummary
	@if [ -z "$$FLINT_KERNEL" ] && [ -e $(STOCK_KERNEL) ]; then export FLINT_KERNEL=$(STOCK_KERNEL); fi; \
	set -x; $(TESTSUMMARY) run -o $(RESULTS)/unit.json -- $(GO) test -json -count=1 $(UNIT_PKGS)

race: testsummary
	$(TESTSUMMARY) run -o $(RESULTS)/race.json -- $(GO) test -json -count=1 -race ./devices/... ./virtio/... ./vmm/...

## fuzz-short: run every fuzz target briefly (FUZZTIME, default 10s each); FUZZ_ROTATE=N
## fuzzes only N of them, a different slice each day (make test: 10)
FUZZTIME ?= 10s
FUZZ_ROTATE ?= 0
fuzz-short:
	scripts/fuzz-short.sh $(FUZZTIME) --rotate $(FUZZ_ROTATE)

## e2e: stock Debian kernels booted by flint (directly, or inside the nested test host), UML,
## and the KVM package tests in the nested test host where this machine has no /dev/kvm
e2e: testsummary
	$(TESTSUMMARY) run -v -o $(RESULTS)/e2e.json -- $(GO) test -json -count=1 -timeout 60m ./tests/

## bench: data-path and start-up benchmarks
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(UNIT_PKGS)

## bench-net: vhost-user network benchmark with user-mode Linux, against UML's vector TAP
## driver and DPDK testpmd (root, ~15 min; BENCHMARKS.md has the results)
bench-net:
	scripts/bench-net.sh

clean:
	rm -rf bin
