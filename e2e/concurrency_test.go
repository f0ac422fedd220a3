package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"
)

// Concurrency and load (issue 7, item 6), on the real binary and a
// loopback server, with the crash suite's full worker spec and small
// release-shaped artifacts (unpinned: digests come from checksum files,
// runc's from its clearsigned list plus a detached signature).
//
//   - same root: 20 `nodeprov apply` of the spec start at once on one fresh
//     root. The server holds every request until the other 19 runs have
//     printed that they wait for the run lock — the one run holding it is
//     then provably inside its run, and no other has got past the lock.
//     All 20 exit 0; one run changed what a clean single run changes and
//     the other 19 changed nothing; each file was requested as often as in
//     the clean run (each artifact once); the tree equals the clean run's
//     (paths, types, modes, owners, contents); no temporary, staging or
//     lock file of a download remains, and the run lock is free.
//   - shared cache: 8 fresh roots applied at once with one --cache DIR.
//     The server holds every artifact request until, for each artifact, all
//     8 runs have either requested it or printed that they wait for
//     another run's download of it — nothing can be in the cache before
//     that. Each artifact is then downloaded exactly once (1 request and 7
//     waits each; without the per-artifact lock in fetch/ it is 8 requests
//     and 0 waits); every root equals a clean single run's with its own
//     --cache, and the shared cache equals that run's cache.
//
// Nothing asserts a duration: the holds end on those conditions (or after
// a generous guard, which fails the test). The table printed at the end
// gives runs, waits, requests per artifact and wall time.

const (
	concurrentApplies = 20
	sharedCacheRoots  = 8
	// gateGuard bounds a hold at the server; reaching it fails the test.
	gateGuard = 2 * time.Minute
)

// loadServer serves an artifact tree, counts requests per path and, while
// a hold is set, keeps the matching requests waiting until it is released.
type loadServer struct {
	url string
	a   *artifacts

	mu      sync.Mutex
	counts  map[string]int
	held    map[string]int // requests waiting at the hold, per path
	holding func(path string) bool
	release chan struct{}
}

func newLoadServer(t *testing.T, a *artifacts) *loadServer {
	t.Helper()
	s := &loadServer{a: a, counts: map[string]int{}, held: map[string]int{}}
	files := http.FileServer(http.Dir(a.dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		s.mu.Lock()
		s.counts[p]++
		var wait chan struct{}
		if s.holding != nil && s.holding(p) {
			wait = s.release
			s.held[p]++
		}
		s.mu.Unlock()
		if wait != nil {
			select {
			case <-wait:
			case <-r.Context().Done():
				return
			}
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// hold makes requests for matching paths wait from now on.
func (s *loadServer) hold(match func(path string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holding, s.release, s.held = match, make(chan struct{}), map[string]int{}
}

// unhold lets the waiting requests go and stops holding.
func (s *loadServer) unhold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.holding != nil {
		close(s.release)
		s.holding = nil
	}
}

func (s *loadServer) heldAt(p string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held[p]
}

func (s *loadServer) heldTotal() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, v := range s.held {
		n += v
	}
	return n
}

// take returns the request counts since the last take, and resets them.
func (s *loadServer) take() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counts
	s.counts = map[string]int{}
	return c
}

// bgRun is a nodeprov process whose stderr is read line by line as it
// comes.
type bgRun struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	mu     sync.Mutex
	stderr []string
	done   chan struct{}
	code   int
	err    error
}

func startBg(t *testing.T, args ...string) *bgRun {
	t.Helper()
	cmd := nodeprovCommand(nil, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r := &bgRun{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout = &r.stdout
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-r.done
		}
	})
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			r.mu.Lock()
			r.stderr = append(r.stderr, sc.Text())
			r.mu.Unlock()
		}
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		} else {
			r.err = err
		}
		close(r.done)
	}()
	return r
}

// saw reports whether a stderr line so far contains s.
func (r *bgRun) saw(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.stderr {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// lines counts the stderr lines that contain s.
func (r *bgRun) lines(s string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range r.stderr {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

func (r *bgRun) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("exit %d (%v)\nstdout:\n%s\nstderr:\n%s", r.code, r.err, shortenText(r.stdout.String(), 4000), shortenText(strings.Join(r.stderr, "\n"), 4000))
}

// waitUntil polls cond until it holds or the guard passes.
func waitUntil(cond func() bool) bool {
	deadline := time.Now().Add(gateGuard)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// Messages of nodeprov on stderr that the test counts.
const (
	lockWaitText     = "waiting for another nodeprov run to finish"
	downloadWaitText = ": waiting: another run (or request) is downloading the same artifact"
)

// artifactNames are the base names of the main artifacts, as progress
// lines name them, and their components, by URL path.
func artifactNames() (names, components map[string]string) {
	names, components = map[string]string{}, map[string]string{}
	for c, rel := range mainArtifacts {
		names["/"+rel], components["/"+rel] = path.Base(rel), c
	}
	return names, components
}

// changedResources lists the resources a JSON report shows as changed.
func changedResources(r report) []string {
	var out []string
	for _, s := range r.Stages {
		for _, a := range s.Actions {
			if a.Status == "changed" {
				out = append(out, s.Name+": "+a.Resource)
			}
		}
	}
	sort.Strings(out)
	return out
}

// applySummary is the text summary's counts line ("apply: 31 changed, 2
// unchanged, 4 deferred"), without the duration.
func applySummary(stdout string) string {
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(l, "apply: ") {
			if i := strings.LastIndex(l, " in "); i > 0 {
				return l[:i]
			}
			return l
		}
	}
	return ""
}

// lockFree reports whether the run lock of root can be taken at once.
func lockFree(t *testing.T, root string) bool {
	t.Helper()
	f, err := os.Open(filepath.Join(root, crashLockFile))
	if err != nil {
		t.Errorf("run lock: %v", err)
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return false
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return true
}

// cacheLeftovers lists what a cache directory holds besides verified
// entries and indexes: staging files, download locks.
func cacheLeftovers(cache string) []string {
	var out []string
	for _, d := range []string{"tmp", "locks"} {
		es, _ := os.ReadDir(filepath.Join(cache, d))
		for _, e := range es {
			out = append(out, d+"/"+e.Name())
		}
	}
	return out
}

// concurrencyRow is one line of the printed table.
type concurrencyRow struct {
	scenario    string
	runs, ok    int
	lockWaits   int
	dlWaits     int
	changedRuns int
	counts      map[string]int // requests per URL path
	otherReqs   int
	wall        time.Duration
	result      string
}

func TestConcurrency(t *testing.T) {
	requireRoot(t)
	a := smallArtifacts(t, 7)
	srv := newLoadServer(t, a)
	spec := writeSpec(t, crashSpec(t, a, srv.url, 2, false))
	names, components := artifactNames()
	var artifactPaths []string
	for p := range names {
		artifactPaths = append(artifactPaths, p)
	}
	sort.Slice(artifactPaths, func(i, j int) bool { return components[artifactPaths[i]] < components[artifactPaths[j]] })
	perArtifact := func(counts map[string]int) []string {
		var out []string
		for _, p := range artifactPaths {
			out = append(out, fmt.Sprintf("%s %d", components[p], counts[p]))
		}
		return out
	}
	work := t.TempDir()
	common := []string{"--lock-timeout", "10m", "--idle-timeout", "5m", "--parallel", "4"}

	// The references: clean single runs, with the cache in the root and
	// with a --cache of their own.
	refRoot := filepath.Join(work, "ref")
	os.Mkdir(refRoot, 0o755)
	r := runNodeprov(t, "", append([]string{"apply", "--root", refRoot, "-o", "json"}, append(common, spec)...)...)
	ref := parseReport(t, r.stdout)
	if r.code != 0 || !ref.OK {
		t.Fatalf("clean apply:\n%s", r.output())
	}
	refCounts := srv.take()
	for _, p := range artifactPaths {
		if refCounts[p] != 1 {
			t.Fatalf("the clean run requested %s %d times: %v", p, refCounts[p], refCounts)
		}
	}
	refChanged := changedResources(ref)
	if len(refChanged) == 0 {
		t.Fatal("the clean run changed nothing")
	}
	want, err := snapshotTree(refRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"usr/local/bin/containerd", "usr/local/sbin/runc", "opt/cni/bin/bridge", "usr/local/bin/runsc", "etc/containerd/config.toml"} {
		if _, ok := want[p]; !ok {
			t.Fatalf("the clean run did not write %s", p)
		}
	}
	refShared, refCache := filepath.Join(work, "ref-shared"), filepath.Join(work, "ref-cache")
	os.Mkdir(refShared, 0o755)
	r = runNodeprov(t, "", append([]string{"apply", "--root", refShared, "--cache", refCache}, append(common, spec)...)...)
	refSummary := applySummary(r.stdout)
	if r.code != 0 || !strings.Contains(refSummary, " changed") {
		t.Fatalf("clean apply with --cache:\n%s", r.output())
	}
	srv.take()
	wantShared, err := snapshotTree(refShared)
	if err != nil {
		t.Fatal(err)
	}
	wantCache, err := snapshotTree(refCache)
	if err != nil {
		t.Fatal(err)
	}
	if cached, _ := os.ReadDir(filepath.Join(refCache, "sha256")); len(cached) != len(artifactPaths) {
		t.Fatalf("the clean run's cache holds %d entries, want %d", len(cached), len(artifactPaths))
	}

	var rows []*concurrencyRow
	scenario := func(name string, f func(t *testing.T, row *concurrencyRow)) {
		t.Run(name, func(t *testing.T) {
			row := &concurrencyRow{}
			rows = append(rows, row)
			defer func() {
				if t.Failed() {
					row.result = "FAIL: " + row.result
				}
			}()
			f(t, row)
		})
	}
	scenario("same root", func(t *testing.T, row *concurrencyRow) {
		sameRoot(t, row, srv, spec, common, work, refCounts, refChanged, want, artifactPaths)
	})
	scenario("shared cache", func(t *testing.T, row *concurrencyRow) {
		sharedCache(t, row, srv, spec, common, work, refSummary, wantShared, wantCache, artifactPaths, names)
	})
	printConcurrencyTable(rows, perArtifact)
}

func sameRoot(t *testing.T, row *concurrencyRow, srv *loadServer, spec string, common []string, work string, refCounts map[string]int,
	refChanged []string, want map[string]treeEntry, artifactPaths []string) {
	row.scenario, row.runs, row.result = fmt.Sprintf("%d applies, one root", concurrentApplies), concurrentApplies, "(stopped)"
	root := filepath.Join(work, "same-root")
	os.Mkdir(root, 0o755)

	srv.hold(func(string) bool { return true })
	start := time.Now()
	var runs []*bgRun
	for range concurrentApplies {
		runs = append(runs, startBg(t, append([]string{"apply", "--root", root, "-o", "json"}, append(common, spec)...)...))
	}
	waiting := func() int {
		n := 0
		for _, r := range runs {
			if r.saw(lockWaitText) {
				n++
			}
		}
		return n
	}
	if !waitUntil(func() bool { return srv.heldTotal() >= 1 && waiting() == concurrentApplies-1 }) {
		t.Errorf("after %s: %d requests held at the server, %d of %d runs waiting for the lock; want the holder's request held and all others waiting",
			gateGuard, srv.heldTotal(), waiting(), concurrentApplies-1)
	}
	srv.unhold()
	for _, r := range runs {
		<-r.done
	}
	row.wall = time.Since(start)
	counts := srv.take()
	row.counts = maps.Clone(counts)

	perResource := map[string][]int{}
	for i, r := range runs {
		rep := report{}
		if err := json.Unmarshal(r.stdout.Bytes(), &rep); err != nil || r.code != 0 || !rep.OK {
			t.Errorf("run %d failed (%v):\n%s", i, err, r)
			continue
		}
		row.ok++
		if r.saw(lockWaitText) {
			row.lockWaits++
		}
		if rep.Changed > 0 {
			row.changedRuns++
		}
		for _, c := range changedResources(rep) {
			perResource[c] = append(perResource[c], i)
		}
	}
	// One run changed exactly what the clean run changes; the others
	// found a converged root.
	if row.changedRuns != 1 {
		t.Errorf("%d runs reported changes, want 1", row.changedRuns)
	}
	for _, c := range refChanged {
		if got := perResource[c]; len(got) != 1 {
			t.Errorf("%s: reported changed by runs %v, want exactly one", c, got)
		}
	}
	for c, by := range perResource {
		if !slices.Contains(refChanged, c) {
			t.Errorf("%s: changed by runs %v, but a clean run does not change it", c, by)
		}
	}
	if row.lockWaits != concurrentApplies-1 {
		t.Errorf("%d runs waited for the lock, want %d", row.lockWaits, concurrentApplies-1)
	}

	for _, p := range artifactPaths {
		if counts[p] != 1 {
			t.Errorf("%s requested %d times, want once", p, counts[p])
		}
		delete(counts, p)
	}
	for p, n := range counts {
		row.otherReqs += n
		if n != refCounts[p] {
			t.Errorf("%s requested %d times, the clean run %d", p, n, refCounts[p])
		}
	}

	got, err := snapshotTree(root)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	diffs := diffTrees(want, got)
	for _, d := range diffs {
		t.Errorf("tree differs from a clean run's: %s", d)
	}
	lo := append(leftovers(root), cacheLeftovers(filepath.Join(root, "var/cache/nodeprov"))...)
	if len(lo) > 0 {
		t.Errorf("left behind: %v", lo)
	}
	free := lockFree(t, root)
	if !free {
		t.Error("the run lock is still held after every run exited")
	}
	if r := runNodeprov(t, "", "check", "--root", root, spec); r.code != 0 {
		t.Errorf("check after the concurrent applies:\n%s", r.output())
	}
	row.result = fmt.Sprintf("tree = clean run's (%d paths), no leftovers, lock free", len(want))
	if len(diffs) > 0 || len(lo) > 0 || !free {
		row.result = fmt.Sprintf("%d differences, %d leftovers, lock free %v", len(diffs), len(lo), free)
	}
}

func sharedCache(t *testing.T, row *concurrencyRow, srv *loadServer, spec string, common []string, work string, refSummary string,
	wantRoot, wantCache map[string]treeEntry, artifactPaths []string, names map[string]string) {
	row.scenario, row.runs, row.result = fmt.Sprintf("%d roots, one --cache", sharedCacheRoots), sharedCacheRoots, "(stopped)"
	cache := filepath.Join(work, "shared-cache")
	var roots []string
	for i := range sharedCacheRoots {
		root := filepath.Join(work, fmt.Sprintf("root-%d", i))
		os.Mkdir(root, 0o755)
		roots = append(roots, root)
	}

	srv.hold(func(p string) bool { _, ok := names[p]; return ok })
	start := time.Now()
	var runs []*bgRun
	for _, root := range roots {
		runs = append(runs, startBg(t, append([]string{"apply", "--root", root, "--cache", cache}, append(common, spec)...)...))
	}
	// Each run, for each artifact, either requests it or waits for
	// another run's download of it.
	reached := func(p string) int {
		n := srv.heldAt(p)
		for _, r := range runs {
			if r.saw("fetch " + names[p] + downloadWaitText) {
				n++
			}
		}
		return n
	}
	if !waitUntil(func() bool {
		for _, p := range artifactPaths {
			if reached(p) < sharedCacheRoots {
				return false
			}
		}
		return true
	}) {
		for _, p := range artifactPaths {
			t.Errorf("after %s: %s requested by %d runs (held), awaited by %d; want all %d runs at one or the other",
				gateGuard, names[p], srv.heldAt(p), reached(p)-srv.heldAt(p), sharedCacheRoots)
		}
	}
	srv.unhold()
	for _, r := range runs {
		<-r.done
	}
	row.wall = time.Since(start)
	counts := srv.take()
	row.counts = maps.Clone(counts)

	for i, r := range runs {
		if r.code != 0 || r.err != nil {
			t.Errorf("root %d: apply failed:\n%s", i, r)
			continue
		}
		row.ok++
		row.dlWaits += r.lines(downloadWaitText)
		// Nothing was cached while the runs planned: each changes what
		// a clean run does, its downloads included (from the cache or not).
		if sum := applySummary(r.stdout.String()); sum != refSummary {
			t.Errorf("root %d: %q, a clean run: %q", i, sum, refSummary)
		} else {
			row.changedRuns++
		}
	}
	for _, p := range artifactPaths {
		waits := 0
		for _, r := range runs {
			if r.saw("fetch " + names[p] + downloadWaitText) {
				waits++
			}
		}
		if counts[p] != 1 || waits != sharedCacheRoots-1 {
			t.Errorf("%s: downloaded %d times, %d runs waited for it; want 1 download and %d waits", names[p], counts[p], waits, sharedCacheRoots-1)
		}
		delete(counts, p)
	}
	for p, n := range counts {
		row.otherReqs += n
		if n > sharedCacheRoots {
			t.Errorf("%s requested %d times by %d runs", p, n, sharedCacheRoots)
		}
	}

	bad := 0
	for i, root := range roots {
		got, err := snapshotTree(root)
		if err != nil {
			t.Fatalf("root %d: snapshot: %v", i, err)
		}
		diffs := diffTrees(wantRoot, got)
		for _, d := range diffs {
			t.Errorf("root %d differs from a clean run's: %s", i, d)
		}
		lo := leftovers(root)
		if len(lo) > 0 {
			t.Errorf("root %d: left behind: %v", i, lo)
		}
		if !lockFree(t, root) {
			t.Errorf("root %d: the run lock is still held", i)
			bad++
		}
		if len(diffs) > 0 || len(lo) > 0 {
			bad++
		}
	}
	gotCache, err := snapshotTree(cache)
	if err != nil {
		t.Fatal(err)
	}
	cacheDiffs := diffTrees(wantCache, gotCache)
	for _, d := range cacheDiffs {
		t.Errorf("the shared cache differs from a clean run's: %s", d)
	}
	if lo := cacheLeftovers(cache); len(lo) > 0 {
		t.Errorf("the shared cache keeps: %v", lo)
		bad++
	}
	row.result = fmt.Sprintf("%d trees = clean run's (%d paths), cache = its cache, no leftovers, locks free", len(roots), len(wantRoot))
	if bad > 0 || len(cacheDiffs) > 0 {
		row.result = fmt.Sprintf("%d roots differ or keep leftovers, %d cache differences", bad, len(cacheDiffs))
	}
}

func printConcurrencyTable(rows []*concurrencyRow, perArtifact func(map[string]int) []string) {
	var b strings.Builder
	b.WriteString("\nconcurrency and load (small artifacts, loopback; requests held until every run is at the lock):\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  scenario\truns ok\twaited for run lock\twaited for a download\truns that changed\trequests per artifact\tother requests\twall time\tresult")
	for _, r := range rows {
		fmt.Fprintf(tw, "  %s\t%d/%d\t%d\t%d\t%d\t%s\t%d\t%s\t%s\n", r.scenario, r.ok, r.runs, r.lockWaits, r.dlWaits, r.changedRuns,
			strings.Join(perArtifact(r.counts), ", "), r.otherReqs, r.wall.Round(time.Millisecond), r.result)
	}
	tw.Flush()
	fmt.Print(b.String())
}
