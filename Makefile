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
	@unformatted=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
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

# Installation. mount(8) looks for mount.TYPE helpers in /sbin only, whatever
# PREFIX is; for `mount -t fuse.ftpsync-mount` it runs /sbin/mount.fuse3 (package
# fuse3), which runs ftpsync-mount through /bin/sh with PATH cleared, so BINDIR must
# be in the shell's default path (/usr/local/bin and /usr/bin are).
PREFIX      ?= /usr/local
DESTDIR     ?=
BINDIR      ?= $(PREFIX)/bin
SBINDIR     ?= /sbin
MANDIR      ?= $(PREFIX)/share/man
DATADIR     ?= $(PREFIX)/share
ZSHCOMPDIR  ?= $(DATADIR)/zsh/site-functions
UNITDIR     ?= $(PREFIX)/lib/systemd/system
VERSION     ?= $(shell v=$$(git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null) && echo $$v | sed 's/^v//' || echo 0.0.0~git$$(git rev-parse --short HEAD 2>/dev/null || echo unknown))
NFPM        := github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.0
PKGROOT     := bin/pkg
GEN         := bin/gen

.PHONY: install uninstall deb deb-test

# Built here rather than through `build` so that the binary knows its version.
$(GEN)/ftpsync-mount: FORCE
	$(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $@ ./cmd/ftpsync-mount

$(GEN)/stamp: $(GEN)/ftpsync-mount
	rm -rf $(GEN)/man $(GEN)/completion && mkdir -p $(GEN)/man $(GEN)/completion
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || date +%s) $(GEN)/ftpsync-mount man $(GEN)/man
	gzip -9n $(GEN)/man/*.1
	$(GEN)/ftpsync-mount completion bash > $(GEN)/completion/ftpsync-mount
	$(GEN)/ftpsync-mount completion zsh > $(GEN)/completion/_ftpsync-mount
	$(GEN)/ftpsync-mount completion fish > $(GEN)/completion/ftpsync-mount.fish
	sed 's|/usr/bin/ftpsync-mount|$(BINDIR)/ftpsync-mount|g' contrib/systemd/ftpsync-mount@.service > $(GEN)/ftpsync-mount@.service
	touch $@

install: $(GEN)/stamp ## install binary, man pages, completion, mount helper and systemd unit (PREFIX, DESTDIR)
	install -Dm755 $(GEN)/ftpsync-mount $(DESTDIR)$(BINDIR)/ftpsync-mount
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SBINDIR)
	install -m644 $(GEN)/man/*.1.gz $(DESTDIR)$(MANDIR)/man1/
	ln -sf ../man1/ftpsync-mount-mount-helper.1.gz $(DESTDIR)$(MANDIR)/man8/mount.ftpsync-mount.8.gz
	install -Dm644 $(GEN)/completion/ftpsync-mount $(DESTDIR)$(DATADIR)/bash-completion/completions/ftpsync-mount
	install -Dm644 $(GEN)/completion/_ftpsync-mount $(DESTDIR)$(ZSHCOMPDIR)/_ftpsync-mount
	install -Dm644 $(GEN)/completion/ftpsync-mount.fish $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/ftpsync-mount.fish
	ln -sf $(BINDIR)/ftpsync-mount $(DESTDIR)$(SBINDIR)/mount.ftpsync-mount
	install -Dm644 $(GEN)/ftpsync-mount@.service $(DESTDIR)$(UNITDIR)/ftpsync-mount@.service
	install -Dm644 contrib/config.yaml $(DESTDIR)$(DATADIR)/doc/ftpsync-mount/examples/config.yaml

uninstall: ## remove what install put in place (same PREFIX, DESTDIR)
	rm -f $(DESTDIR)$(BINDIR)/ftpsync-mount $(DESTDIR)$(SBINDIR)/mount.ftpsync-mount \
		$(DESTDIR)$(MANDIR)/man1/ftpsync-mount.1.gz $(DESTDIR)$(MANDIR)/man1/ftpsync-mount-*.1.gz \
		$(DESTDIR)$(MANDIR)/man8/mount.ftpsync-mount.8.gz \
		$(DESTDIR)$(DATADIR)/bash-completion/completions/ftpsync-mount \
		$(DESTDIR)$(ZSHCOMPDIR)/_ftpsync-mount \
		$(DESTDIR)$(DATADIR)/fish/vendor_completions.d/ftpsync-mount.fish \
		$(DESTDIR)$(UNITDIR)/ftpsync-mount@.service
	rm -rf $(DESTDIR)$(DATADIR)/doc/ftpsync-mount/examples

# The binary links glibc (cgo: the system's resolver, for mDNS names like nas.local,
# and its user database), so the package depends on the newest glibc symbol
# version it uses, as dpkg-shlibdeps would say; a binary built without cgo
# needs no libc6 and gets no such line.
deb: ## build bin/ftpsync-mount_VERSION_ARCH.deb with nfpm (Depends: fuse3, libc6)
	rm -rf $(PKGROOT) $(GEN) bin/ftpsync-mount_*.deb
	$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/$(PKGROOT) PREFIX=/usr SBINDIR=/usr/sbin ZSHCOMPDIR=/usr/share/zsh/vendor-completions
	command -v objdump >/dev/null || { echo "make deb: objdump (binutils) is needed to read the glibc version the binary needs"; exit 1; }
	glibc=$$({ objdump -T $(GEN)/ftpsync-mount 2>/dev/null || true; } | grep -o 'GLIBC_[0-9.]*' | sed 's/^GLIBC_//' | sort -uV | tail -n1 || true); \
	LIBC_DEPENDS=$${glibc:+"libc6 (>= $$glibc)"} VERSION='$(VERSION)' ARCH=$$($(GO) env GOARCH) $(GO) run $(NFPM) package \
		--config packaging/nfpm.yaml --packager deb --target bin/

# Downloads a Debian root once (cached in FTPSYNC_DEB_CACHE), so not part of `make test`.
deb-test: ## make deb, then install and mount it in a clean Debian 12 chroot (root; needs Debian's mirror)
	scripts/test-deb.sh

.PHONY: FORCE
FORCE:

# Long fault runs, beyond the bounded ones in `make test` (which runs the kill -9
# loop with 3 kills): STRESS_KILLS kill -9 remounts, a long seeded model test and
# stress-ng against a mount (root, FUSE).
STRESS_KILLS ?= 20
STRESS_TIME  ?= 30s

.PHONY: stress
stress: build ## long fault runs: 20 kill -9 remounts, a long model test, stress-ng on a mount
	command -v stress-ng >/dev/null || apt-get install -y stress-ng
	FTPSYNC_KILLS=$(STRESS_KILLS) $(GO) test -race -count=1 -timeout 30m -run '^TestKill9MixedWorkloadLoop$$' -v ./cmd/ftpsync-mount
	FTPSYNC_MODEL_SEEDS=50 FTPSYNC_MODEL_OPS=3000 $(GO) test -race -count=1 -timeout 60m -run '^TestModelRandomOperations$$' ./fs
	STRESS_TIME=$(STRESS_TIME) scripts/stress-ng-mount.sh $(BIN)
