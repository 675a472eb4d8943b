# multiproc — one Makefile for every module. Modules are discovered
# (scripts/modules.sh), never listed by hand. CI calls these targets only.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
MODULES   := $(shell scripts/modules.sh)
PREFIX    := github.com/multiproc/multiproc
PKGS      := $(addsuffix /...,$(addprefix $(PREFIX)/,$(MODULES)))
BIN       := $(CURDIR)/.bin
FUZZTIME  ?= 10s
TESTFLAGS ?=
STATICCHECK_VERSION := v0.8.2
# The module set's tool: the dependency table (modules.txt), the version (VERSION).
MODSET    := $(GO) run $(PREFIX)/tools/cmd/modset

export GOFLAGS := -buildvcs=false

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-zA-Z0-9_/%-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## Install what the tests need and a fresh machine lacks (python3).
	@scripts/ensure-deps.sh python3

.PHONY: demo
demo: mp ## The main job: a parallel workload across worker processes, then across cluster agents.
	$(BIN)/mp demo $(DEMOFLAGS)
	@echo
	@echo "== the same image on a cluster pool (NATS JetStream, two agents), one agent SIGKILLed mid-render:"
	$(BIN)/mp demo --cluster --chaos --no-python --starts 0 --width 800 --height 500 --out demo-out

# The mp command, built once into .bin (go's build cache makes later builds quick).
.PHONY: mp
mp:
	@mkdir -p $(BIN)
	@echo "building mp (the first build compiles its dependencies, about a minute; later ones take seconds)..."
	@$(GO) build -o $(BIN)/mp $(PREFIX)/tools/cmd/mp
	@echo "built $(BIN)/mp"

.PHONY: test
test: deps ## Test every module in workspace mode (one go test call).
	$(GO) test -count=1 $(TESTFLAGS) $(PKGS)

.PHONY: test-modules
test-modules: $(addprefix test/,$(MODULES)) ## Test each module alone with GOWORK=off.

# Modules that have no Go files yet (created ahead of their work) are skipped.
has_go = [ -n "$$(find $(1) -name '*.go' -print -quit)" ]

test/%:
	@if $(call has_go,$*); then cd $* && GOWORK=off $(GO) test -count=1 ./...; fi

.PHONY: build-modules
build-modules: $(addprefix build/,$(MODULES)) ## Build and vet each module alone with GOWORK=off (catches forbidden deps).

build/%:
	@if $(call has_go,$*); then echo "vet $* (GOWORK=off)"; cd $* && GOWORK=off $(GO) vet ./...; fi

.PHONY: test-race
test-race: deps ## Test every module under the race detector.
	$(GO) test -count=1 -race $(TESTFLAGS) $(PKGS)

.PHONY: test-fuzz
test-fuzz: ## Run each fuzz target for FUZZTIME (default 10s).
	@GO=$(GO) scripts/fuzz.sh $(FUZZTIME)

COVERDIR  ?= $(CURDIR)/.cover

.PHONY: cover
cover: ## Coverage profile per module (COVERDIR), then each robustness.md row's test alone: rows whose test misses the code they claim.
	@mkdir -p $(COVERDIR)
	@for mod in $(MODULES); do \
	  $(call has_go,$$mod) || continue; \
	  echo "== cover $$mod"; \
	  (cd $$mod && $(GO) test -count=1 $(TESTFLAGS) -coverprofile=$(COVERDIR)/$$(echo $$mod | tr / _).out ./...) || exit 1; \
	done
	scripts/robustness-cover.sh $(COVERDIR)

.PHONY: bench
bench: mp ## Benchmarks with the baseline kit's keys, beside CPython and the floors.
	$(BIN)/mp bench $(BENCHFLAGS)

.PHONY: lint
lint: check-deps check-spdx build-modules ## go vet, staticcheck, gofmt, SPDX headers and the dependency-direction check.
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)
	@unformatted=$$(gofmt -l $(MODULES)); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

.PHONY: check-spdx
check-spdx: ## Fail when a Go or proto file lacks its SPDX licence line.
	scripts/check-spdx.sh

.PHONY: check-deps
check-deps: ## Fail when a module imports one that modules.txt does not allow.
	$(MODSET) check-deps
	$(MODSET) gomod -check
	$(MODSET) docs -check

.PHONY: gomod
gomod: ## Write every go.mod's replace block and sibling requires from modules.txt and VERSION.
	$(MODSET) gomod

.PHONY: docs-deps
docs-deps: ## Write the dependency table of docs/architecture.md from modules.txt.
	$(MODSET) docs

.PHONY: generate
generate: ## Regenerate *.pb.go with local protoc (installed if missing) and the pinned protoc-gen-go.
	@scripts/ensure-deps.sh protoc
	@mkdir -p $(BIN)
	cd proto && $(GO) build -o $(BIN)/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	cd proto && protoc --plugin=protoc-gen-go=$(BIN)/protoc-gen-go -I . \
	  --go_out=. --go_opt=paths=source_relative $$(find . -name '*.proto' | sort)

.PHONY: go-work
go-work: ## Regenerate go.work from the modules present.
	scripts/gen-go-work.sh

.PHONY: tidy
# modset is built before the modules are tidied: a module that starts to
# import a sibling gets a zero pseudo-version of it from go mod tidy, which
# the workspace cannot build until modset gomod writes the set's version.
tidy: ## go mod tidy in every module.
	@mkdir -p $(BIN) && $(GO) build -o $(BIN)/modset $(PREFIX)/tools/cmd/modset
	@for mod in $(MODULES); do echo "== tidy $$mod"; (cd $$mod && GOWORK=off $(GO) mod tidy); done
	@$(BIN)/modset gomod

.PHONY: check-clean
check-clean: generate go-work docs-deps ## Fail when generated code, go.work, go.mod or the docs' table drift.
	@mkdir -p $(BIN) && $(GO) build -o $(BIN)/modset $(PREFIX)/tools/cmd/modset
	@for mod in $(MODULES); do (cd $$mod && GOWORK=off $(GO) mod tidy); done
	@$(BIN)/modset gomod
	@if [ -n "$$(git status --porcelain -- go.work docs/architecture.md '*.pb.go' '*/go.mod' '*/go.sum' '**/go.mod' '**/go.sum')" ]; then \
	  echo "check-clean: generated files drifted; run make generate go-work tidy docs-deps and commit:"; \
	  git status --porcelain -- go.work docs/architecture.md '*.pb.go' '*/go.mod' '*/go.sum'; git diff --stat; exit 1; fi
	@echo "check-clean: generated code, go.work and go.mod files are in sync"

.PHONY: release-check
release-check: ## Serve the module set at VERSION from a file proxy; a module outside the repository go-gets, builds and runs it.
	scripts/release-check.sh

.PHONY: release
release: ## make release VERSION=vX.Y.Z [TAG=1]: set the version, check, print (TAG=1: create) the tags.
	@[[ -n "$(VERSION)" ]] || { echo "usage: make release VERSION=vX.Y.Z [TAG=1]" >&2; exit 2; }
	$(MODSET) set-version $(VERSION)
	@$(MAKE) --no-print-directory go-work docs-deps
	@$(MAKE) --no-print-directory check-deps build-modules release-check
	$(MODSET) tags $(if $(TAG),-create)

# Other systems: multiproc needs Linux (any architecture); elsewhere the build
# stops with one message from internal/base/linuxonly (docs/architecture.md, Platforms).
CROSS ?= linux/386 linux/arm64 darwin/arm64 windows/amd64 freebsd/amd64

.PHONY: cross
cross: ## go vet for other GOOS/GOARCH (CROSS): Linux ones pass, others stop with "multiproc needs Linux".
	scripts/cross.sh $(CROSS)

.PHONY: clean
clean: ## Remove build outputs.
	rm -rf $(BIN) demo-out
