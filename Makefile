# slipway — the two commands are `make demo` (the main job) and `make test`
# (every test). Both install what they need from Debian when run as root.

GO ?= go
TEST_TIMEOUT ?= 60m

.PHONY: build gendocs man completions package libslirp demo test test-unit deps fuzz soak bench clean

# slipway version prints the version and commit the Go toolchain stamped
# from the checkout (-buildvcs=auto: even where GOFLAGS turns it off);
# VERSION and COMMIT override them, as a release build may.
VERSION ?=
COMMIT ?=
BUILDINFO := github.com/slipway-net/slipway/internal/buildinfo
LDFLAGS := $(if $(VERSION),-X $(BUILDINFO).version=$(VERSION)) $(if $(COMMIT),-X $(BUILDINFO).commit=$(COMMIT))

# Without cgo: the sandbox changes every thread with AllThreadsSyscall,
# which a cgo build cannot do (see README, Security). -trimpath: the binary
# does not depend on the directory it was built in.
build:
	CGO_ENABLED=0 $(GO) build -buildvcs=auto -trimpath -ldflags '$(LDFLAGS)' -o bin/slipway ./cmd/slipway

# Man pages (bin/man/slipway*.1) and bash, zsh and fish completions
# (bin/completions/{bash/slipway,zsh/_slipway,fish/slipway.fish}), written
# by a build of this same command tree with its hidden gendocs command
# (-tags gendocs; the shipped binary has neither it nor the man page
# renderer). That build is for this machine even when GOOS/GOARCH name
# another. SOURCE_DATE_EPOCH (default: the commit's time) dates the pages.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
export SOURCE_DATE_EPOCH
GENDOCS := bin/gendocs/slipway
gendocs:
	@mkdir -p bin/gendocs
	GOOS= GOARCH= CGO_ENABLED=0 $(GO) build -buildvcs=auto -trimpath -tags gendocs -ldflags '$(LDFLAGS)' -o $(GENDOCS) ./cmd/slipway

man: gendocs
	rm -rf bin/man
	$(GENDOCS) gendocs --man bin/man

completions: gendocs
	rm -rf bin/completions
	$(GENDOCS) gendocs --completions bin/completions

# A Debian package of bin/slipway, its man pages and completions, the
# drop-in names (slirp4netns, pasta, gvproxy, bhyve-slirp-helper) as links
# in /usr/libexec/slipway/, and the systemd units slipway@.service and
# slipway@.socket (packaging/). Built with dpkg-deb alone, for GOARCH, into
# DEB_DIR.
DEB_DIR ?= bin
package: build man completions
	scripts/package-deb.sh --binary bin/slipway --man bin/man --completions bin/completions \
		--version "$$($(GENDOCS) version | head -n1 | cut -d' ' -f2)" --arch "$$($(GO) env GOARCH)" --out $(DEB_DIR)

deps:
	scripts/install-deps.sh

# libslirp.so.0 backed by slipway (README, "QEMU -netdev user and
# slirp4netns on slipway"): the C shim with libslirp 4.7's ABI and symbol
# versions, the Go core it loads from the same directory, and the server
# of the process shape, without cgo (its sandbox changes every thread, as
# the engine's does). Needs Debian's libslirp-dev for the header (make
# deps installs it).
LIBSLIRP_DIR ?= bin/libslirp
CC ?= cc
libslirp:
	@mkdir -p $(LIBSLIRP_DIR)
	$(GO) build -buildmode=c-shared -o $(LIBSLIRP_DIR)/libslipway-slirp.so ./libslirp/core
	@rm -f $(LIBSLIRP_DIR)/libslipway-slirp.h
	$(CC) -O2 -g -Wall -Wextra -Werror -fPIC -fvisibility=hidden -shared \
		-Wl,-soname,libslirp.so.0 -Wl,--version-script=libslirp/shim/libslirp.map \
		-o $(LIBSLIRP_DIR)/libslirp.so.0 libslirp/shim/libslirp.c -ldl -lpthread
	CGO_ENABLED=0 $(GO) build -o $(LIBSLIRP_DIR)/slipway-slirp-server ./libslirp/server
	ln -sf libslirp.so.0 $(LIBSLIRP_DIR)/libslirp.so

demo: deps
	scripts/demo.sh

# Every test: unit tests, fuzz seed corpora, namespace and QEMU end-to-end
# tests (root needed for namespaces; CI runs as root); then the unit
# packages (all but test/) again under the race detector, in -short mode
# so that it stays a unit run (the end-to-end tests mostly drive slipway
# as a separate process, which the detector does not see into); then the
# benchmark's own module (bench/go.mod), which ./... does not reach: its
# tests include a 3-minute soak (bench/soak, see `make soak`); last, every
# fuzz target fuzzed for FUZZTIME_TEST (2-3 minutes for 40 targets, mostly their builds).
# A count, not a duration: Go 1.26's fuzz coordinator can report a bare
# "context deadline exceeded" failure when a duration ends while a worker is
# mid-input (golang/go#75804, fixed in Go 1.27); a count has no deadline.
FUZZTIME_TEST ?= 300x
test: deps
	$(GO) vet ./...
	$(GO) -C bench vet ./...
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(GO) test -race -short -count=1 -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v /test/)
	$(GO) -C bench test -count=1 -timeout $(TEST_TIMEOUT) ./...
	scripts/fuzz.sh $(FUZZTIME_TEST)

# Unit tests only: -short skips everything that creates namespaces or TAP
# devices, boots QEMU or runs real binaries, even as root.
test-unit:
	$(GO) test -short ./...
	$(GO) -C bench test -short ./...

# Runs each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	scripts/fuzz.sh $(FUZZTIME)

# The long run (bench/soak): `slipway run` under churn, bulk downloads, DNS
# and published-port clients for SOAK (default 1h), sampling its memory,
# descriptors, goroutines and flows; fails on an upward trend. Root. Writes
# bench/results/soak/soak.md and soak.png. Not in CI (make test runs a
# 3-minute version).
SOAK ?= 1h
soak: deps
	$(GO) -C bench test -count=1 -timeout 0 -run '^TestSoak$$' -v ./soak -soak $(SOAK) -soak.out ../results/soak

# The benchmark (bench/README.md): slipway against slirp4netns, pasta, a
# veth pair, passt and QEMU's -netdev user, interleaved over ROUNDS rounds,
# plus the many-flows scale runs. Root. About 15-20 minutes by default;
# ONLY=ns|vm|scale (comma list), BACKENDS=slipway,veth,... and BENCHFLAGS
# (any flag of `go run . -h` in bench/) narrow it. Writes bench/results/latest.*.
# It runs inside bench/, a module of its own, so that its chart library is
# no dependency of slipway's: paths in BENCHFLAGS are relative to bench/.
ROUNDS ?=
ONLY ?=
BACKENDS ?=
BENCHFLAGS ?=
bench: deps
	$(GO) -C bench run . $(if $(ROUNDS),-rounds $(ROUNDS)) $(if $(ONLY),-only $(ONLY)) \
		$(if $(BACKENDS),-backends $(BACKENDS)) $(BENCHFLAGS) \
		-command "make bench$(if $(ROUNDS), ROUNDS=$(ROUNDS))$(if $(ONLY), ONLY=$(ONLY))$(if $(BACKENDS), BACKENDS=$(BACKENDS))$(if $(BENCHFLAGS), BENCHFLAGS='$(BENCHFLAGS)')"

clean:
	rm -rf bin
