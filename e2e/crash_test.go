package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

// Crash consistency (issue 7, item 1). A `nodeprov apply` of a full worker
// spec is killed with SIGKILL at many moments spread over the whole run,
// and at more moments inside the install stage and the short stages after
// it; after each kill `apply` runs again to completion, and the tree it
// leaves must be the tree of a clean run. While the runs go on, a watcher
// reads every destination path over and over: a path may hold its state
// from before the run or its final state (contents, mode, owner, link
// target), or be absent if it did not exist before — never a partial file,
// never a gap.
//
// Two scenarios, each a subtest with its own table:
//
//   - cold: an empty root; the spec verifies through checksum files and
//     runc's OpenPGP signatures, as a first boot does.
//   - upgrade: the root first gets the whole spec applied with one set of
//     artifacts (v1: other bytes under the same names, other file contents,
//     sandbox image and drop-in), then the run that is killed moves it to
//     v2. Components are pinned by sha256 so the new artifacts are fetched;
//     every target already exists, so this is where a record out of step
//     with the installed files, or a temporary file of an existing target,
//     would show.
//
// What is compared (crash_helpers_test.go, snapshotTree): every path under the
// root with its type, permission and special bits, owner, sha256 of its
// contents, and symlink target; modification times are not compared. The
// run-state files whose bytes legitimately differ between two runs are
// normalized, and only those:
//
//   - /run/nodeprov.lock: contents not compared; they name the PID of the
//     last run that held the lock. Its type, mode and owner are compared.
//   - /var/lib/nodeprov/last-run.json: startedAt, durationMs, changed (the
//     re-apply after a kill changes fewer actions than a clean run) and
//     bootID (empty offline) are dropped; command, spec, specDigest, ok and
//     error must match.
//   - /var/lib/nodeprov/installed.json: mtimeNs and ino are dropped (they
//     identify the installed files' inodes, which differ between roots) —
//     after checking that every recorded file exists with exactly the
//     recorded size, mode, mtime, inode and sha256, so the record is in step
//     with the installed files and the next run may trust it unhashed.
//
// After the recovering apply, another apply must change nothing, and no
// temporary file of the host layer (".<name>.nodeprov-tmp-<hex>") nor any
// download staging file may remain anywhere under the root.
//
// Kill points: evenly spaced over the measured duration of a clean
// (throttled) run, with jitter inside each slot; every fifth of those also
// kills the first recovering apply (a crash loop); then points inside the
// install stage and after the files stage's start (files, containerd,
// units and the run's records take milliseconds, so evenly spaced points
// rarely land there), timed from the moment the stage's line is printed.
//
// CI (`go test ./e2e`): cold 50 + 10 + 5 kill points, upgrade 10 + 4 + 2,
// on small artifacts (seeded random bytes in the upstream layout, ~14 MiB)
// served at 4 MiB/s per request while a run is to be killed, unthrottled
// for recoveries. `make soak` sets NODEPROV_SOAK=1: the cold scenario and
// the upgrade's v2 use the artifacts built from Debian's real binaries
// (~130 MiB) at 8 MiB/s, with 150 + 40 + 10 and 40 + 12 + 8 kill points.
// NODEPROV_CRASH_POINTS=N sets the cold scenario's count (a fifth inside
// install, a tenth after files; the upgrade gets a third as many);
// NODEPROV_CRASH_SEED replays the random choices of an earlier run (the
// seed is printed with the tables).

type crashConfig struct {
	soak bool
	cold killCounts
	upg  killCounts
	rate int64 // bytes per second per request during runs to be killed
	seed uint64
}

// killCounts are the kill points of a scenario: spread over the run, inside
// install, and after the files stage began.
type killCounts struct{ spread, install, tail int }

func crashConfigFromEnv(t *testing.T) crashConfig {
	t.Helper()
	c := crashConfig{cold: killCounts{50, 10, 5}, upg: killCounts{10, 4, 2}, rate: 4 << 20, seed: uint64(time.Now().UnixNano())}
	if os.Getenv("NODEPROV_SOAK") != "" {
		c = crashConfig{soak: true, cold: killCounts{150, 40, 10}, upg: killCounts{40, 12, 8}, rate: 8 << 20, seed: c.seed}
	}
	if s := os.Getenv("NODEPROV_CRASH_POINTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 3 {
			t.Fatalf("NODEPROV_CRASH_POINTS=%q: want a number >= 3", s)
		}
		split := func(n int) killCounts {
			c := killCounts{install: max(1, n/5), tail: n / 10}
			c.spread = max(1, n-c.install-c.tail)
			return c
		}
		c.cold, c.upg = split(n), split(max(3, n/3))
	}
	if s := os.Getenv("NODEPROV_CRASH_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("NODEPROV_CRASH_SEED=%q: %v", s, err)
		}
		c.seed = n
	}
	return c
}

// crashSpec is a full worker: every component (pinned to the tree's
// digests when pin is set), kernel modules and sysctl (persisted files
// only: the root is a sandbox, so nothing live is touched), containerd
// with gVisor, a registry mirror, a proxy and a CNI bridge, plain files, a
// directory and a symlink, and containerd.service enabled with a drop-in
// (offline: unit files and symlinks). version changes file contents, the
// sandbox image and the drop-in.
func crashSpec(t *testing.T, a *artifacts, serverURL string, version int, pin bool) string {
	t.Helper()
	sha := func(component string) string { return "" }
	if pin {
		p := pinsOf(t, a)
		sha = func(component string) string { return fmt.Sprintf(", sha256: {amd64: %s}", p[component]) }
	}
	return fmt.Sprintf(`apiVersion: nodeprov/v1alpha1
kind: Node
metadata: {name: crash-worker}
%[1]s
keyrings:
  runc:
    armored: |
%[2]s
components:
  containerd: {version: %[3]s, binaries: [containerd, containerd-shim, containerd-shim-runc-v1, containerd-shim-runc-v2, ctr]%[4]s}
  runc: {version: %[5]s, keyring: runc%[6]s}
  cni: {version: %[7]s%[8]s}
  gvisor: {version: "%[9]s", shim: false%[10]s}
kernel:
  modules: [overlay, br_netfilter]
  sysctl:
    net.ipv4.ip_forward: "1"
    net.bridge.bridge-nf-call-iptables: "1"
containerd:
  cgroupDriver: cgroupfs
  sandboxImage: registry.k8s.io/pause:3.%[11]d
  runtimes:
    runsc:
      type: io.containerd.runsc.v1
      runscConfig: {network: none}
  registries:
    docker.io:
      mirrors: [{host: "https://mirror.example.internal:5000"}]
  proxy: {http: "http://proxy.example.internal:3128", noProxy: [localhost, 127.0.0.1]}
  cni: {network: bridge, subnet: 10.88.0.0/16}
files:
  - path: /etc/crictl.yaml
    contents: |
      runtime-endpoint: unix:///run/containerd/containerd.sock
      timeout: %[12]d
  - {path: /etc/nodeprov-crash, type: directory, mode: "0750"}
  - {path: /etc/nodeprov-crash/notes, mode: "0600", contents: "spec version %[12]d: kill -9 at any moment\n"}
  - {path: /etc/nodeprov-crash/crictl.yaml, type: symlink, target: /etc/crictl.yaml}
units:
  - name: containerd.service
    enabled: true
    state: started
    dropins:
      - name: 10-limits.conf
        contents: |
          [Service]
          LimitNOFILE=%[13]d
machineID: {policy: warn}
`, mirrors(serverURL), indent(a.keyring, "      "), containerdVersion, sha("containerd"), runcVersion, sha("runc"),
		cniVersion, sha("cni"), gvisorVersion, sha("gvisor"), 8+version, version, 1048576*version)
}

// crashScenario is a run to kill: the spec applied first (none for a cold
// root), and the spec of the run that is killed, each with its tree.
type crashScenario struct {
	name          string
	before        *artifacts // nil: an empty root
	beforeSpec    string
	after         *artifacts
	afterSpec     string
	counts        killCounts
	beforeEntries map[string]treeEntry // the tree after beforeSpec alone
}

// killPoint is one kill: at a moment after the start of the run, or after
// a stage's line was printed.
type killPoint struct {
	after string // "" (the start of the run), "install" or "files": whose start at killCounts from
	at    time.Duration
	// again, when set, kills the first recovering apply too, this long
	// after it starts (a crash loop), before the final recovery.
	again time.Duration
}

type crashRow struct {
	point     killPoint
	killedAt  time.Duration // from the start of the run
	killed    bool          // false: the run had already finished
	stage     string
	again     string // stage the recovering apply was killed in, if it was
	temps     int    // temporary and staging files the kill(s) left behind (distinct names)
	recovered int    // actions the recovering apply changed
	converged bool
}

func TestCrashConsistency(t *testing.T) {
	requireRoot(t)
	cfg := crashConfigFromEnv(t)
	ts := newTreeServer(t)

	v1 := smallArtifacts(t, 1)
	var v2 *artifacts
	if cfg.soak {
		v2 = releaseArtifacts(t)
	} else {
		v2 = smallArtifacts(t, 2)
	}
	scenarios := []*crashScenario{
		{name: "cold", after: v2, afterSpec: writeSpec(t, crashSpec(t, v2, ts.url, 2, false)), counts: cfg.cold},
		{name: "upgrade", before: v1, beforeSpec: writeSpec(t, crashSpec(t, v1, ts.url, 1, true)),
			after: v2, afterSpec: writeSpec(t, crashSpec(t, v2, ts.url, 2, true)), counts: cfg.upg},
	}
	var summary []string
	for i, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			rows, took := runCrashScenario(t, cfg, ts, sc, cfg.seed+uint64(i))
			summary = append(summary, printCrashTable(sc, rows, cfg, took))
		})
	}
	fmt.Printf("\n%s\n", strings.Join(summary, "\n"))
}

// prepare brings a fresh root to the scenario's starting point: the
// before spec applied at full speed, or nothing.
func (sc *crashScenario) prepare(t *testing.T, ts *treeServer, root string) {
	t.Helper()
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if sc.before == nil {
		return
	}
	ts.rate.Store(0)
	ts.serve(sc.before)
	if r := applyJSON(t, root, sc.beforeSpec); r.code != 0 || !r.ok {
		t.Fatalf("apply of the %s scenario's first spec:\n%s", sc.name, r.out)
	}
}

func runCrashScenario(t *testing.T, cfg crashConfig, ts *treeServer, sc *crashScenario, seed uint64) ([]crashRow, time.Duration) {
	work := t.TempDir()
	rng := rand.New(rand.NewPCG(seed, 7))

	// The clean run: its tree is the reference, its timing places the kills.
	clean := filepath.Join(work, "clean")
	sc.prepare(t, ts, clean)
	if sc.before != nil {
		var err error
		if sc.beforeEntries, err = snapshotTree(clean); err != nil {
			t.Fatal(err)
		}
	}
	ts.serve(sc.after)
	ts.rate.Store(cfg.rate)
	k := startApply(t, clean, sc.afterSpec)
	<-k.exited
	if k.waitErr != nil {
		t.Fatalf("clean apply: %v\n%s", k.waitErr, k.output())
	}
	runTime := k.ran
	installFrom, installTo := k.stageAt["install"], k.stageAt["files"]
	if installTo <= installFrom {
		t.Fatalf("clean apply printed no install and files stages:\n%s", k.output())
	}
	ts.rate.Store(0)
	if r := applyJSON(t, clean, sc.afterSpec); r.changed != 0 {
		t.Fatalf("re-apply of the clean root changed %d actions:\n%s", r.changed, r.out)
	}
	want, err := snapshotTree(clean)
	if err != nil {
		t.Fatalf("snapshot of the clean root: %v", err)
	}
	if lo := leftovers(clean); len(lo) > 0 {
		t.Fatalf("the clean run left temporary files: %v", lo)
	}
	// The spec must have reached every kind of destination, or the kills
	// would prove less than they claim.
	for _, p := range []string{"usr/local/bin/containerd", "usr/local/bin/ctr", "usr/local/sbin/runc", "usr/local/bin/runsc",
		"opt/cni/bin/bridge", "etc/containerd/config.toml", "etc/containerd/runsc.toml", "etc/containerd/certs.d/docker.io/hosts.toml",
		"etc/cni/net.d", "etc/sysctl.d/99-nodeprov.conf", "etc/modules-load.d/nodeprov.conf", "etc/crictl.yaml",
		"etc/nodeprov-crash/notes", "etc/nodeprov-crash/crictl.yaml", "etc/systemd/system/containerd.service",
		"etc/systemd/system/containerd.service.d/10-limits.conf", "etc/systemd/system/multi-user.target.wants/containerd.service",
		crashRecordFile, crashLastRun, crashLockFile} {
		if _, ok := want[p]; !ok {
			t.Errorf("the clean run did not write %s", p)
		}
	}
	// An upgrade must replace what it claims to: binaries, configuration.
	for _, p := range []string{"usr/local/bin/containerd", "usr/local/sbin/runc", "opt/cni/bin/bridge", "usr/local/bin/runsc",
		"etc/containerd/config.toml", "etc/crictl.yaml", "etc/nodeprov-crash/notes", "etc/systemd/system/containerd.service.d/10-limits.conf"} {
		if b, ok := sc.beforeEntries[p]; ok && b == want[p] {
			t.Errorf("the upgrade left %s as it was", p)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	allow := allowedStates(sc.beforeEntries, want)

	// An unthrottled run from the same start gives the same tree, and its
	// duration places the second kills (recovering applies run unthrottled).
	fast := filepath.Join(work, "clean-unthrottled")
	sc.prepare(t, ts, fast)
	ts.serve(sc.after)
	k2 := startApply(t, fast, sc.afterSpec)
	<-k2.exited
	if k2.waitErr != nil {
		t.Fatalf("unthrottled clean apply: %v\n%s", k2.waitErr, k2.output())
	}
	applyJSON(t, fast, sc.afterSpec)
	if got, err := snapshotTree(fast); err != nil || len(diffTrees(want, got)) > 0 {
		t.Fatalf("two clean applies gave different trees: %v\n%s", err, strings.Join(diffTrees(want, got), "\n"))
	}
	os.RemoveAll(fast)
	t.Logf("clean run: %s (install stage %s..%s; unthrottled %s), %d paths, %d files and links watched; seed %d",
		runTime.Round(time.Millisecond), installFrom.Round(time.Millisecond), installTo.Round(time.Millisecond),
		k2.ran.Round(time.Millisecond), len(want), len(allow), seed)

	var points []killPoint
	for i := range sc.counts.spread {
		slot := float64(runTime) / float64(sc.counts.spread)
		kp := killPoint{at: time.Duration((float64(i) + rng.Float64()) * slot)}
		if i%5 == 4 {
			kp.again = time.Duration(rng.Float64() * float64(k2.ran))
		}
		points = append(points, kp)
	}
	for i := range sc.counts.install {
		slot := float64(installTo-installFrom) / float64(sc.counts.install)
		points = append(points, killPoint{after: "install", at: time.Duration((float64(i) + rng.Float64()) * slot)})
	}
	for i := range sc.counts.tail {
		slot := float64(runTime-installTo) / float64(sc.counts.tail)
		points = append(points, killPoint{after: "files", at: time.Duration((float64(i) + rng.Float64()) * slot)})
	}

	start := time.Now()
	var rows []crashRow
	for i, p := range points {
		rows = append(rows, crashPoint(t, i+1, p, cfg, ts, sc, work, want, allow))
	}
	return rows, time.Since(start)
}

// crashPoint runs one kill point in a fresh root and checks convergence.
func crashPoint(t *testing.T, n int, p killPoint, cfg crashConfig, ts *treeServer, sc *crashScenario, work string, want map[string]treeEntry, allow map[string]pathStates) crashRow {
	t.Helper()
	row := crashRow{point: p}
	root := filepath.Join(work, fmt.Sprintf("kill-%03d", n))
	sc.prepare(t, ts, root)
	defer os.RemoveAll(root)
	fail := func(format string, args ...any) {
		t.Errorf("kill point %d (%s): %s", n, describePoint(p), fmt.Sprintf(format, args...))
	}

	ts.serve(sc.after)
	ts.rate.Store(cfg.rate)
	w := startWatcher(root, allow, "killed run")
	k := startApply(t, root, sc.afterSpec)
	if p.after != "" {
		if from, ok := k.waitStage(p.after); ok {
			sleepUntil(k.start.Add(from + p.at))
		}
	} else {
		sleepUntil(k.start.Add(p.at))
	}
	row.killedAt = time.Since(k.start)
	row.killed, row.stage = k.kill()
	if !row.killed {
		row.stage = "(finished)"
		if k.waitErr != nil {
			fail("the throttled run failed on its own: %v\n%s", k.waitErr, k.output())
		}
	}
	left := leftovers(root)
	seen := map[string]bool{}
	for _, l := range left {
		seen[l] = true
	}
	if testing.Verbose() && len(left) > 0 {
		t.Logf("kill point %d (%s, killed in %s): left %s", n, describePoint(p), stageName(row.stage), strings.Join(left, ", "))
	}

	ts.rate.Store(0)
	if p.again > 0 {
		w.setPhase("recovering apply, killed")
		k := startApply(t, root, sc.afterSpec)
		sleepUntil(k.start.Add(p.again))
		killed, stage := k.kill()
		row.again = stage
		if !killed {
			row.again = "(finished)"
		}
		left := leftovers(root)
		for _, l := range left {
			seen[l] = true
		}
		if testing.Verbose() && len(left) > 0 {
			t.Logf("kill point %d, second kill %d ms (in %s): left %s", n, p.again.Milliseconds(), stageName(row.again), strings.Join(left, ", "))
		}
	}
	row.temps = len(seen)
	w.setPhase("recovering apply")
	r := applyJSON(t, root, sc.afterSpec)
	if r.code != 0 || !r.ok {
		fail("recovering apply failed:\n%s\nkilled run's output:\n%s", r.out, k.output())
	}
	row.recovered = r.changed
	w.setPhase("apply after recovery")
	again := applyJSON(t, root, sc.afterSpec)
	bad, _, _ := w.finish()
	if again.code != 0 || again.changed != 0 {
		fail("the apply after recovery changed %d actions (exit %d):\n%s", again.changed, again.code, again.out)
	}
	for _, b := range bad {
		fail("a destination held what it never may: %s", b)
	}
	got, err := snapshotTree(root)
	if err != nil {
		fail("snapshot: %v", err)
	}
	diffs := diffTrees(want, got)
	if len(diffs) > 12 {
		diffs = append(diffs[:12], fmt.Sprintf("... and %d more", len(diffs)-12))
	}
	for _, d := range diffs {
		fail("tree differs from the clean run's: %s", d)
	}
	lo := leftovers(root)
	if len(lo) > 0 {
		fail("temporary files left after convergence: %v", lo)
	}
	row.converged = err == nil && len(diffs) == 0 && len(bad) == 0 && r.code == 0 && r.ok && again.code == 0 && again.changed == 0 && len(lo) == 0
	return row
}

func describePoint(p killPoint) string {
	s := fmt.Sprintf("%d ms", p.at.Milliseconds())
	if p.after != "" {
		s = fmt.Sprintf("%s stage + %d ms", p.after, p.at.Milliseconds())
	}
	if p.again > 0 {
		s += fmt.Sprintf(", again at %d ms", p.again.Milliseconds())
	}
	return s
}

func sleepUntil(t time.Time) {
	if d := time.Until(t); d > 0 {
		time.Sleep(d)
	}
}

type applyResult struct {
	code    int
	ok      bool
	changed int
	out     string
}

// applyJSON runs a full apply with a JSON report.
func applyJSON(t *testing.T, root, spec string) applyResult {
	t.Helper()
	res := runNodeprov(t, "", "apply", "--root", root, "-o", "json", spec)
	r := applyResult{code: res.code, out: res.stdout}
	if res.code != 0 {
		r.out += res.stderr
	}
	var rep struct {
		OK      bool `json:"ok"`
		Changed int  `json:"changed"`
	}
	if json.Unmarshal([]byte(res.stdout), &rep) == nil {
		r.ok, r.changed = rep.OK, rep.Changed
	}
	return r
}

// printCrashTable prints a scenario's table and returns its summary line.
func printCrashTable(sc *crashScenario, rows []crashRow, cfg crashConfig, took time.Duration) string {
	var b strings.Builder
	converged, killed := 0, 0
	byStage := map[string]int{}
	for _, r := range rows {
		if r.converged {
			converged++
		}
		if r.killed {
			killed++
			byStage[r.stage]++
		}
	}
	var stages []string
	for _, st := range append([]string{""}, stagesOrder...) {
		if byStage[st] > 0 {
			stages = append(stages, fmt.Sprintf("%d in %s", byStage[st], stageName(st)))
		}
	}
	artifacts := "small artifacts"
	if cfg.soak {
		artifacts = "Debian's binaries"
	}
	fmt.Fprintf(&b, "\ncrash consistency, %s (%s, %.0f MiB/s per connection while killed, %s):\n",
		sc.name, artifacts, float64(cfg.rate)/(1<<20), took.Round(time.Second))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\tkill point\tkilled at\tstage at kill\ttemp files left\trecovery changed\tconverged")
	for i, r := range rows {
		yes := "yes"
		if !r.converged {
			yes = "NO"
		}
		stage := stageName(r.stage)
		if r.point.again > 0 {
			stage += ", then " + stageName(r.again)
		}
		fmt.Fprintf(tw, "  %d\t%s\t%d ms\t%s\t%d\t%d\t%s\n", i+1, describePoint(r.point), r.killedAt.Milliseconds(), stage, r.temps, r.recovered, yes)
	}
	tw.Flush()
	line := fmt.Sprintf("%s: %d/%d kill points converged (killed: %s; %d found the run already finished; seed %d)",
		sc.name, converged, len(rows), strings.Join(stages, ", "), len(rows)-killed, cfg.seed)
	fmt.Print(b.String() + line + "\n")
	return line
}

// stagesOrder is nodeprov's stage order, for the summary line.
var stagesOrder = []string{"preflight", "machine-id", "kernel", "fetch", "install", "files", "containerd", "docker", "units", "images"}

func stageName(s string) string {
	if s == "" {
		return "(before the first stage)"
	}
	return s
}
