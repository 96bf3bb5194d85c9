# Flint: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
export PATH := $(PATH):/usr/local/go/bin
BIN := bin/flint
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.Version=$(VERSION)
# The suite's Go packages, without the slow end-to-end tests under tests/.
UNIT_PKGS := $(shell $(GO) list ./... 2>/dev/null | grep -v /tests$$)

.PHONY: all build run test unit e2e race fuzz-short bench bench-net vet fmt-check clean

all: build

## build: a static flint binary in bin/ (no cgo: it also runs inside the nested test host)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags urfave_cli_no_docs -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/flint

## run: boot the stock Debian cloud kernel into a busybox shell on this terminal
run:
	scripts/run-nested-shell.sh

## test: everything CI runs: static checks, unit and KVM tests, a short fuzz pass, stock-kernel boot tests
test: vet fmt-check unit race fuzz-short e2e

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

unit:
	$(GO) test -count=1 $(UNIT_PKGS)

race:
	$(GO) test -count=1 -race ./devices/... ./virtio/... ./vmm/...

## fuzz-short: run every fuzz target briefly (FUZZTIME, default 10s each)
FUZZTIME ?= 10s
fuzz-short:
	scripts/fuzz-short.sh $(FUZZTIME)

## e2e: stock Debian kernels booted by flint (directly, or inside the nested test host)
e2e:
	$(GO) test -count=1 -v -timeout 40m ./tests/

## bench: data-path and start-up benchmarks
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(UNIT_PKGS)

## bench-net: vhost-user network benchmark with user-mode Linux, against UML's vector TAP
## driver and DPDK testpmd (root, ~15 min; BENCHMARKS.md has the results)
bench-net:
	scripts/bench-net.sh

clean:
	rm -rf bin
