#!/bin/sh
# make demo: the whole story on one machine (see the Makefile's demo
# target, which builds nodeprov and the mirror and installs Debian's
# packages first). e2e/mirror builds release-shaped containerd, runc, CNI
# and gVisor artifacts from Debian's packages, serves them on loopback and
# writes $DEMO_DIR/node.yaml: examples/demo-node.yaml pointed at it.
# nodeprov then plans, applies, re-applies, checks and repairs that node in
# the sandbox root $DEMO_ROOT, recreated on every run. The mirror is stopped
# on exit, failure or interrupt.
#
# Environment: NODEPROV_BIN (bin/nodeprov), DEMO_DIR (_demo), DEMO_ROOT
# ($DEMO_DIR/root). Run from the repository's top directory.
set -e
np=${NODEPROV_BIN:-bin/nodeprov}; d=${DEMO_DIR:-_demo}; root=${DEMO_ROOT:-$d/root}; spec=$d/node.yaml; t0=$(date +%s)
step() { printf '\n== %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; }
run() { show "$@"; "$@"; }
expect() {
	want=$1; shift; show "$@"; rc=0; "$@" || rc=$?
	if [ "$rc" != "$want" ]; then echo "demo: exit $rc, expected $want" >&2; exit 1; fi
	echo "(exit $rc, as expected)"
}
# expect_quiet: like expect, showing only the command's last line (its summary).
expect_quiet() {
	want=$1; shift; show "$@"; rc=0; out=$("$@" 2>&1) || rc=$?
	printf '%s\n' "$out" | tail -n 1
	if [ "$rc" != "$want" ]; then printf '%s\n' "$out"; echo "demo: exit $rc, expected $want" >&2; exit 1; fi
	echo "(exit $rc, as expected)"
}
requests() { grep -c '^[A-Z]* /' $d/mirror.log || true; }
# served_since N: the mirror's request log after its first N requests.
served_since() {
	grep '^[A-Z]* /' $d/mirror.log | sed -n "$(($1 + 1)),\$p" | sed 's/^/  mirror: /' | grep . || echo "  mirror: no request"
}
rm -rf $d && mkdir -p $root

step "validate a spec with mistakes: every one named with file:line:col (exit 2)"
expect 2 $np validate examples/testdata/broken.yaml

step "start the loopback mirror: release-shaped artifacts built from Debian's binaries"
show "bin/demo-mirror -gzip 1 -spec examples/demo-node.yaml -spec-out $spec -ready $d/mirror.url > $d/mirror.log 2>&1 &"
bin/demo-mirror -gzip 1 -spec examples/demo-node.yaml -spec-out $spec -ready $d/mirror.url > $d/mirror.log 2>&1 &
mirror=$!
stop_mirror() {
	if kill $mirror 2>/dev/null; then wait $mirror || true; fi
	step "mirror stopped: $(tail -n 1 $d/mirror.log)"
}
trap stop_mirror EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
n=0
until [ -s $d/mirror.url ]; do
	if ! kill -0 $mirror 2>/dev/null; then cat $d/mirror.log; echo "demo: the mirror did not start" >&2; exit 1; fi
	n=$((n + 1)); if [ $n -gt 1200 ]; then echo "demo: the mirror is not ready after 120s" >&2; exit 1; fi
	sleep 0.1
done
cat $d/mirror.log

step "the spec $spec: examples/demo-node.yaml with the mirror's address and this run's runc key"
show "diff examples/demo-node.yaml $spec"
diff examples/demo-node.yaml $spec | grep '^[<>]' | sed -n '1,8p'
echo "  ... (the rest of the armored key)"
run $np validate $spec

step "plan into the sandbox root $root: downloads, installs, file diffs; changes nothing"
run $np plan --root $root $spec
echo "(it read the checksum files to show the digests:)"
served_since 0

step "apply: fetch and verify in parallel (runc by its OpenPGP signatures), install, configure"
before=$(requests)
run $np apply --root $root $spec
echo "(verified downloads are cached in $root/var/cache/nodeprov; what the mirror served:)"
served_since $before

step "apply again: nothing changes, nothing is downloaded"
before=$(requests)
run $np apply --root $root $spec
served_since $before
if [ "$(requests)" != "$before" ]; then echo "demo: the second apply downloaded" >&2; exit 1; fi

step "check: no drift (exit 0)"
expect_quiet 0 $np check --root $root $spec

step "tamper: overwrite the installed runc, edit containerd's config by hand; check names both (exit 3)"
show "printf '#!/bin/sh\necho tampered\n' > $root/usr/local/sbin/runc"
printf '#!/bin/sh\necho tampered\n' > $root/usr/local/sbin/runc
show "echo 'oom_score = -999' >> $root/etc/containerd/config.toml"
echo 'oom_score = -999' >> $root/etc/containerd/config.toml
expect 3 $np check --root $root $spec

step "apply repairs both: runc from the download cache, re-verified by its signed checksum; the JSON report"
before=$(requests)
show "$np apply --root $root -o json $spec > $d/report.json"
$np apply --root $root -o json $spec > $d/report.json
echo "$d/report.json: $(grep -E '^  "(ok|changed|durationMs)":' $d/report.json | tr -d ' ,' | paste -sd ' ' -)"
awk -F'"' '/"resource":/ { r = $4 } /"status": "changed"/ { print "  changed: " r }' $d/report.json
served_since $before
show "$root/usr/local/sbin/runc --version | head -n 1"
$root/usr/local/sbin/runc --version | head -n 1
expect_quiet 0 $np check --root $root $spec
echo "(each run's outcome is also recorded in $root/var/lib/nodeprov/last-run.json)"

step "plan --expanded (excerpt): the artifacts the components expand to"
show "$np plan --expanded $spec"
$np plan --expanded $spec | sed -n '/^# Components and downloads expand/,/^#   cni /p' | sed '/^#   cni /d'

step "the node installed under $root"
run ls -l $root/usr/local/bin $root/usr/local/sbin $root/opt/cni/bin
run $root/usr/local/bin/containerd --version
show "$root/usr/local/bin/runsc --version | head -n 1"
$root/usr/local/bin/runsc --version | head -n 1
run head -n 20 $root/etc/containerd/config.toml
show "find $root/etc -type f -o -type l"
find $root/etc -type f -o -type l | sort

step "deferred to first boot"
echo "Live steps (loading overlay and br_netfilter, writing /proc/sys, starting containerd.service)"
echo "were reported as deferred: $root is a sandbox root, not /. On a node, nodeprov apply as root"
echo "runs them; nodeprov cloud-init turns the spec into first-boot user data."
echo "demo finished in $(($(date +%s) - t0))s; the mirror's request log is $d/mirror.log"
