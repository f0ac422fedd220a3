# nodeprov — see README.md. `make demo` and `make test` set up everything
# they need on a fresh Debian machine (apt-get when run as root).

GO        ?= go
BIN       := bin/nodeprov
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
DEMO_DIR  ?= _demo
DEMO_ROOT ?= $(DEMO_DIR)/root
# Debian packages the tests use: unshare (util-linux) for private network
# namespaces, iproute2 to inspect them, the real container runtime
# components the end-to-end tests install and run, and systemd for
# `systemctl --root`, which the units stage's offline links are compared with.
# cloud-init validates generated user data (`cloud-init schema`; its
# packages start nothing on a host without systemd) and zsh runs the
# completion tests.
TEST_DEBS := util-linux iproute2 kmod procps containerd runc runsc containernetworking-plugins busybox-static systemd systemd-container debootstrap cloud-init zsh
GO_DIRS   := $(wildcard cmd spec stages fetch schema e2e)

.PHONY: all build test unit e2e bench demo lint fuzz generate deps clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=auto -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/nodeprov
	@echo "built $(BIN): $$(stat -c %s $(BIN) | numfmt --to=iec-i --suffix=B) (static, stripped)"

deps:
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else echo "missing Debian packages:$$missing (run make test as root to install them)"; fi; \
	fi

test: deps build
	$(GO) vet ./...
	@test -z "$$(gofmt -l $(GO_DIRS))" || { gofmt -l $(GO_DIRS); echo "gofmt needed"; exit 1; }
	NODEPROV_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 60m ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(TEST_FUZZTIME)

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /e2e)

e2e: build
	NODEPROV_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 60m -v ./e2e/...

bench: build
	NODEPROV_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench . -benchmem ./stages/... ./e2e/...

# The end-to-end benchmark of issues 3 and 7 (see e2e/bench/README.md):
# nodeprov cold apply, warm re-apply, the docs' sequential curl/sha256sum/tar
# recipe and the equivalent Ansible playbook over ~200 MB on loopback with a
# per-connection cap; prints a table. ansible-core comes without its
# recommends (6 packages; the playbook uses ansible.builtin modules only).
# Flags: make bench-e2e BENCH_FLAGS='-runs 5 -rate 10' (-ansible=false skips Ansible).
.PHONY: bench-e2e
bench-e2e: build
	@missing=""; for p in containerd runc runsc containernetworking-plugins curl time ansible-core; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
		else echo "missing Debian packages:$$missing (run make bench-e2e as root to install them)"; exit 1; fi; \
	fi
	$(GO) run ./e2e/bench -nodeprov $(BIN) $(BENCH_FLAGS)

# The long crash-consistency run of issue 7 (e2e/crash_test.go): the
# artifacts built from Debian's real binaries, 200 SIGKILL points in a cold
# apply and 60 in an upgrade (go test ./e2e runs 65 + 16 on small
# artifacts); about 40 minutes. make soak SOAK_POINTS=N sets the cold
# count (the upgrade gets a third); NODEPROV_CRASH_SEED=S replays a run.
.PHONY: soak
soak: build
	NODEPROV_BIN=$(CURDIR)/$(BIN) NODEPROV_SOAK=1 $(if $(SOAK_POINTS),NODEPROV_CRASH_POINTS=$(SOAK_POINTS)) \
		$(GO) test -count=1 -v -timeout 4h -run '^TestCrashConsistency$$' ./e2e

# Every fuzz target, one after the other (go test runs one -fuzz target per
# invocation), each for FUZZTIME: make fuzz FUZZTIME=5m; FUZZFLAGS='-parallel 1'
# leaves CPUs free. New crashers are written to the package's
# testdata/fuzz/<target>/: commit them with the fix.
FUZZTIME    ?= 30s
# make test runs every fuzz target this long (after the seed corpora and
# committed crashers, which plain go test runs), so a regression shows in CI.
TEST_FUZZTIME ?= 5s
FUZZ_TARGETS := ./spec:FuzzLoad ./fetch:FuzzParseChecksums ./stages/archive:FuzzPlan \
	./stages/archive:FuzzSelect ./stages/containerd:FuzzMergePatch

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) $$pkg; \
	done

# The hostile-input, network-fault and concurrency suites of issue 7 (part of go test
# ./e2e too), verbose, with their case | outcome tables.
.PHONY: reliability
reliability: build
	NODEPROV_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -v -run '^(TestHostileInputs|TestNetworkFaults|TestConcurrency)$$' ./e2e

generate:
	$(GO) generate ./...

lint:
	@test -z "$$(gofmt -l $(GO_DIRS))" || { gofmt -l $(GO_DIRS); exit 1; }
	$(GO) vet ./...

# make demo (issue 6): the whole story on one machine. e2e/mirror builds
# release-shaped containerd, runc, CNI and gVisor artifacts from Debian's
# packages (DEMO_DEBS, installed when run as root), serves them on loopback
# and writes $(DEMO_DIR)/node.yaml: examples/demo-node.yaml pointed at it.
# nodeprov then plans, applies, re-applies, checks and repairs that node in
# the sandbox root $(DEMO_ROOT), recreated on every run. The mirror runs as
# a built binary (not go run, whose child a kill would miss) and is stopped
# on exit, failure or interrupt.
DEMO_DEBS := containerd runc runsc containernetworking-plugins

define demo_script
np=$(BIN); d=$(DEMO_DIR); root=$(DEMO_ROOT); spec=$$d/node.yaml; t0=$$(date +%s)
step() { printf '\n== %s\n' "$$*"; }
show() { printf '$$ %s\n' "$$*"; }
run() { show "$$@"; "$$@"; }
expect() {
	want=$$1; shift; show "$$@"; rc=0; "$$@" || rc=$$?
	if [ "$$rc" != "$$want" ]; then echo "demo: exit $$rc, expected $$want" >&2; exit 1; fi
	echo "(exit $$rc, as expected)"
}
# expect_quiet: like expect, showing only the command's last line (its summary).
expect_quiet() {
	want=$$1; shift; show "$$@"; rc=0; out=$$("$$@" 2>&1) || rc=$$?
	printf '%s\n' "$$out" | tail -n 1
	if [ "$$rc" != "$$want" ]; then printf '%s\n' "$$out"; echo "demo: exit $$rc, expected $$want" >&2; exit 1; fi
	echo "(exit $$rc, as expected)"
}
requests() { grep -c '^[A-Z]* /' $$d/mirror.log || true; }
# served_since N: the mirror's request log after its first N requests.
served_since() {
	grep '^[A-Z]* /' $$d/mirror.log | sed -n "$$(($$1 + 1)),\$$p" | sed 's/^/  mirror: /' | grep . || echo "  mirror: no request"
}
rm -rf $$d && mkdir -p $$root

step "validate a spec with mistakes: every one named with file:line:col (exit 2)"
expect 2 $$np validate examples/testdata/broken.yaml

step "start the loopback mirror: release-shaped artifacts built from Debian's binaries"
show "bin/demo-mirror -gzip 1 -spec examples/demo-node.yaml -spec-out $$spec -ready $$d/mirror.url > $$d/mirror.log 2>&1 &"
bin/demo-mirror -gzip 1 -spec examples/demo-node.yaml -spec-out $$spec -ready $$d/mirror.url > $$d/mirror.log 2>&1 &
mirror=$$!
stop_mirror() {
	if kill $$mirror 2>/dev/null; then wait $$mirror || true; fi
	step "mirror stopped: $$(tail -n 1 $$d/mirror.log)"
}
trap stop_mirror EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
n=0
until [ -s $$d/mirror.url ]; do
	if ! kill -0 $$mirror 2>/dev/null; then cat $$d/mirror.log; echo "demo: the mirror did not start" >&2; exit 1; fi
	n=$$((n + 1)); if [ $$n -gt 1200 ]; then echo "demo: the mirror is not ready after 120s" >&2; exit 1; fi
	sleep 0.1
done
cat $$d/mirror.log

step "the spec $$spec: examples/demo-node.yaml with the mirror's address and this run's runc key"
show "diff examples/demo-node.yaml $$spec"
diff examples/demo-node.yaml $$spec | grep '^[<>]' | sed -n '1,8p'
echo "  ... (the rest of the armored key)"
run $$np validate $$spec

step "plan into the sandbox root $$root: downloads, installs, file diffs; changes nothing"
run $$np plan --root $$root $$spec
echo "(it read the checksum files to show the digests:)"
served_since 0

step "apply: fetch and verify in parallel (runc by its OpenPGP signatures), install, configure"
before=$$(requests)
run $$np apply --root $$root $$spec
echo "(verified downloads are cached in $$root/var/cache/nodeprov; what the mirror served:)"
served_since $$before

step "apply again: nothing changes, nothing is downloaded"
before=$$(requests)
run $$np apply --root $$root $$spec
served_since $$before
if [ "$$(requests)" != "$$before" ]; then echo "demo: the second apply downloaded" >&2; exit 1; fi

step "check: no drift (exit 0)"
expect_quiet 0 $$np check --root $$root $$spec

step "tamper: overwrite the installed runc, edit containerd's config by hand; check names both (exit 3)"
show "printf '#!/bin/sh\necho tampered\n' > $$root/usr/local/sbin/runc"
printf '#!/bin/sh\necho tampered\n' > $$root/usr/local/sbin/runc
show "echo 'oom_score = -999' >> $$root/etc/containerd/config.toml"
echo 'oom_score = -999' >> $$root/etc/containerd/config.toml
expect 3 $$np check --root $$root $$spec

step "apply repairs both: runc from the download cache, re-verified by its signed checksum; the JSON report"
before=$$(requests)
show "$$np apply --root $$root -o json $$spec > $$d/report.json"
$$np apply --root $$root -o json $$spec > $$d/report.json
echo "$$d/report.json: $$(grep -E '^  "(ok|changed|durationMs)":' $$d/report.json | tr -d ' ,' | paste -sd ' ' -)"
awk -F'"' '/"resource":/ { r = $$4 } /"status": "changed"/ { print "  changed: " r }' $$d/report.json
served_since $$before
show "$$root/usr/local/sbin/runc --version | head -n 1"
$$root/usr/local/sbin/runc --version | head -n 1
expect_quiet 0 $$np check --root $$root $$spec
echo "(each run's outcome is also recorded in $$root/var/lib/nodeprov/last-run.json)"

step "plan --expanded (excerpt): the artifacts the components expand to"
show "$$np plan --expanded $$spec"
$$np plan --expanded $$spec | sed -n '/^# Components and downloads expand/,/^#   cni /p' | sed '/^#   cni /d'

step "the node installed under $$root"
run ls -l $$root/usr/local/bin $$root/usr/local/sbin $$root/opt/cni/bin
run $$root/usr/local/bin/containerd --version
show "$$root/usr/local/bin/runsc --version | head -n 1"
$$root/usr/local/bin/runsc --version | head -n 1
run head -n 20 $$root/etc/containerd/config.toml
show "find $$root/etc -type f -o -type l"
find $$root/etc -type f -o -type l | sort

step "deferred to first boot"
echo "Live steps (loading overlay and br_netfilter, writing /proc/sys, starting containerd.service)"
echo "were reported as deferred: $$root is a sandbox root, not /. On a node, nodeprov apply as root"
echo "runs them; nodeprov cloud-init turns the spec into first-boot user data."
echo "demo finished in $$(($$(date +%s) - t0))s; the mirror's request log is $$d/mirror.log"
endef

demo: export DEMO_SCRIPT = $(demo_script)
demo: build
	@$(MAKE) --no-print-directory deps TEST_DEBS='$(DEMO_DEBS)'
	$(GO) build -o bin/demo-mirror ./e2e/mirror
	@sh -ec "$$DEMO_SCRIPT"

clean:
	rm -rf bin _demo
