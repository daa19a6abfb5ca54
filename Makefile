# sriov-dra build, test and demo entry points. `make help` lists them.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# grpcnotrace: gRPC without golang.org/x/net/trace, whose html/template
# keeps every exported method in the binary (36 MB instead of 58 MB; the
# daemon touches less of it: docs/performance.md, footprint).
BUILD_TAGS := grpcnotrace
BIN := bin/sriov-dra
PKGS := ./...
# Log-call checker: contextual logging only, no deprecated klog calls.
# `go run` of a pinned version fetches and caches it (module and build
# cache), so a fresh machine needs nothing installed.
LOGCHECK ?= $(GO) run sigs.k8s.io/logtools/logcheck@v0.11.0
LOGCHECK_FLAGS := -check-contextual -check-deprecations
# Build tags of the tiers that are not in the default build.
LINT_TAGS := e2e,faultinject,vmtest
# golangci-lint (.golangci.yaml), built once per version into .cache/bin.
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := .cache/bin/golangci-lint-$(GOLANGCI_LINT_VERSION)/golangci-lint

.PHONY: help build test unit hosttest reliability lint fmt bench fuzz vmtest e2e e2e-matrix tested-with chaos demo demo-down image-tar clean

help: ## list targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/sriov-dra (static)
	CGO_ENABLED=0 $(GO) build -trimpath -tags $(BUILD_TAGS) -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/sriov-dra

test: lint ## unit + host-kernel tests with -race (host-kernel tests need root; they skip clearly otherwise), crash tests, fuzz smoke, Helm chart check
	$(GO) test -race -count=1 -timeout 25m $(PKGS)
	$(MAKE) reliability
	$(MAKE) fuzz
	$(MAKE) -C test/helm test

lint: $(GOLANGCI_LINT) ## gofmt, go mod tidy, golangci-lint (.golangci.yaml: vet, errcheck, errorlint, gocritic, staticcheck, unused, misspell, netlink dumps only through pkg/nlink), logcheck; the default build and the e2e, faultinject and vmtest files
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) mod tidy -diff
	$(GOLANGCI_LINT) run --build-tags $(LINT_TAGS) $(PKGS)
	$(GOLANGCI_LINT) run ./internal/faults/ # its one !faultinject file
	$(LOGCHECK) $(LOGCHECK_FLAGS) $(PKGS)
	GOFLAGS="$$($(GO) env GOFLAGS) -tags=$(LINT_TAGS)" $(LOGCHECK) $(LOGCHECK_FLAGS) $(PKGS)
	$(GO) run ./test/cluster/testedwith check # the "Tested with" tables match test/cluster/results

$(GOLANGCI_LINT):
	GOBIN=$(abspath $(dir $@)) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

fmt: ## gofmt -w
	gofmt -w $$(git ls-files '*.go')

reliability: ## crash at every failure point, runtime faults, bad input (-tags faultinject); checks docs/reliability.md is current
	$(GO) test -race -tags faultinject -count=1 -timeout 15m ./test/reliability/

FUZZTIME ?= 10s
fuzz: ## run every fuzz target briefly (FUZZTIME=10s)
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' .); do \
	  dir=$$(dirname $$f); \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$f | sed 's/^func //'); do \
	    echo "fuzz $$dir $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./$$dir; \
	  done; done

bench: ## benchmarks, printed as a table
	$(GO) test -run '^$$' -bench . -benchmem -count 1 $(PKGS) | tee /tmp/sriov-dra-bench.txt | $(GO) run ./test/benchtable

vmtest: ## real SR-IOV kernel tests: QEMU with emulated igb NICs
	bash test/vm/run.sh

e2e: ## real one-node cluster end-to-end tests (RUNTIME=crio: with CRI-O; K8S_VERSION=, CONTAINERD_VERSION= pick other versions)
	bash test/cluster/e2e.sh

e2e-matrix: ## the e2e suite on every documented runtime/Kubernetes combination; writes test/cluster/results and the tables
	bash test/cluster/matrix.sh

tested-with: ## regenerate the "Tested with" tables of README.md and docs/install.md from test/cluster/results
	$(GO) run ./test/cluster/testedwith render

chaos: ## churn of pods with VF claims on the cluster while driver, runtime, kubelet, API server and disk fail (CHAOS_MINUTES=3 CHAOS_PODS=24 CHAOS_SEED=)
	bash test/cluster/chaos.sh

demo: ## build and start a one-node cluster with the driver, run example pods, show what they got (RUNTIME=crio: with CRI-O)
	bash test/cluster/demo.sh

demo-down: ## tear the demo cluster down
	bash test/cluster/cluster.sh down

image-tar: build ## OCI image tar of the driver without a Docker engine (bin/sriov-dra-image.tar)
	$(GO) run ./test/ocitar -binary $(BIN) -name sriov-dra:$(VERSION) -out bin/sriov-dra-image.tar

clean:
	rm -rf bin
