# ftpsync-mount: the targets a newcomer can guess. `make help` lists them.
# `make test PKG=./target/...` narrows test and lint to some packages.
# The integration tests need the real servers from scripts/test-servers.sh (root, Debian).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO          ?= go
BIN         := bin/ftpsync-mount
SERVERS     := scripts/test-servers.sh
FUZZTIME    ?= 30s
PKG         ?= ./...
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Exports the FTPSYNC_TEST_* variables of the running test servers into a recipe's shell.
WITH_SERVERS := eval "$$($(SERVERS) env)" &&

.PHONY: help build test race lint bench demo servers-up servers-down fuzz clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

build: ## build bin/ftpsync-mount
	$(GO) build -o $(BIN) ./cmd/ftpsync-mount

test: servers-up ## start the test servers, then run every test with the race detector
	$(WITH_SERVERS) $(GO) test -race -count=1 -timeout 20m $(PKG)

race: test ## the same race-detector run as test

lint: ## go vet, gofmt and staticcheck; fails on any finding
	$(GO) vet $(PKG)
	@unformatted=$$(gofmt -l .); \
	if [[ -n $$unformatted ]]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) run $(STATICCHECK) $(PKG)

bench: servers-up ## run the benchmark program against the test servers
	$(WITH_SERVERS) $(GO) run ./internal/bench

demo: build ## build and run the demo
	$(BIN) demo

servers-up: ## start proftpd (127.0.0.1:2131) and vsftpd (127.0.0.1:2141); idempotent
	$(SERVERS) up

servers-down: ## stop the test servers
	$(SERVERS) down

# go test -fuzz takes one target in one package, so each Fuzz* test runs on its own. The list
# prints a package's test names before its "ok <package>" line.
fuzz: ## run every Fuzz* test for FUZZTIME each (default 30s)
	@list=$$($(GO) test -list '^Fuzz' ./...); \
	targets=$$(awk '/^Fuzz/ { fns = fns " " $$1 } \
		/^ok / { n = split(fns, f, " "); for (i = 1; i <= n; i++) print $$2, f[i]; fns = "" }' <<<"$$list"); \
	if [[ -z $$targets ]]; then echo "no Fuzz tests found"; exit 0; fi; \
	while read -r pkg fn <&3; do \
		echo "== $$pkg $$fn for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
	done 3<<<"$$targets"

clean: ## stop the test servers and remove built and generated files
	-$(SERVERS) down
	rm -rf bin .servers .demo
