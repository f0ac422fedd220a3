package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	art "github.com/nodeprov/nodeprov/e2e/artifacts"
	"github.com/nodeprov/nodeprov/stages/host/treetest"
)

// Helpers of crash_test.go and crash_rollback_test.go: small
// release-shaped artifacts, a loopback server whose tree and throttle
// change between runs, tree snapshots and their comparison, the watcher
// that looks for partial files while nodeprov runs, and a nodeprov apply
// that can be killed at a known stage.

// ---- small release-shaped artifacts ---------------------------------------

// smallArtifacts builds the release layout of releaseArtifacts (the
// versions, paths, checksum files and runc signatures the component
// catalog expects) from seeded random files instead of Debian's binaries
// (artifacts.RandomSourcesSized), so that a cold apply moves about 14 MiB:
// enough to spread kill points over, small enough for 50+ runs in CI.
// Nothing here is executed; only bytes matter. Trees built with different
// seeds have the same names and different bytes (an upgrade in place).
func smallArtifacts(t *testing.T, seed uint64) *artifacts {
	t.Helper()
	dir := t.TempDir()
	const mi = 1 << 20
	sizes := map[string]int64{
		"containerd": 2 * mi, "containerd-shim": mi / 2, "containerd-shim-runc-v1": mi, "containerd-shim-runc-v2": mi,
		"ctr": 3 * mi / 2, "runc": 3 * mi / 2, "runsc": 3 * mi,
	}
	src, err := art.RandomSourcesSized(filepath.Join(dir, "src"), seed, func(name string) int64 {
		if n, ok := sizes[name]; ok {
			return n
		}
		return 192 << 10 // each CNI plugin
	})
	if err != nil {
		t.Fatalf("small artifacts' sources: %v", err)
	}
	tree, err := art.Build(filepath.Join(dir, "tree"), art.Options{Sources: src})
	if err != nil {
		t.Fatalf("build small artifacts: %v", err)
	}
	return newArtifacts(tree)
}

// mainArtifacts are the tree paths of the artifact each component pins.
var mainArtifacts = map[string]string{
	"containerd": art.ContainerdPath,
	"runc":       art.RuncPath,
	"cni":        art.CNIPath,
	"gvisor":     art.RunscPath,
}

// pinsOf returns the components' `sha256: {amd64: …}` values for a tree.
func pinsOf(t *testing.T, a *artifacts) map[string]string {
	t.Helper()
	out := map[string]string{}
	for c, rel := range mainArtifacts {
		sum, err := fileHash(a.tree.File(rel), sha256.New)
		if err != nil {
			t.Fatal(err)
		}
		out[c] = sum
	}
	return out
}

// ---- a loopback server with a switchable tree and throttle ----------------

// treeServer serves one artifact tree at a time (switched between runs to
// upgrade in place), nothing (404) before the first. While rate is set it
// paces every response body to rate bytes per second; each request gets
// its own budget (artifacts.ServerOptions.PerRequest), and nodeprov uses
// one request per connection at a time, so it acts as a per-connection
// cap. A rate of 0 serves at full speed.
type treeServer struct {
	url  string
	srv  *art.Server
	rate serverRate
}

// serverRate sets a treeServer's rate: rate.Store(bytesPerSecond).
type serverRate struct{ srv *art.Server }

func (r serverRate) Store(bytesPerSec int64) { r.srv.SetRate(float64(bytesPerSec)) }

func newTreeServer(t *testing.T) *treeServer {
	t.Helper()
	srv, err := art.Serve(t.TempDir(), art.ServerOptions{PerRequest: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &treeServer{url: srv.URL, srv: srv, rate: serverRate{srv}}
}

func (ts *treeServer) serve(a *artifacts) { ts.srv.SetDir(a.dir) }

// ---- tree snapshots ---------------------------------------------------------

// Run-state files of nodeprov whose bytes legitimately differ from run to
// run; snapshotTree handles each as documented in crash_test.go.
const (
	crashLockFile   = "run/nodeprov.lock"
	crashLastRun    = "var/lib/nodeprov/last-run.json"
	crashRecordFile = "var/lib/nodeprov/installed.json"
	crashStagingDir = "var/cache/nodeprov/tmp"
)

// treeEntry is one path of a tree as the comparison sees it.
type treeEntry = treetest.Entry

// snapshotTree describes every path under root (relative, slash-separated):
// type, permission and special bits, owner, contents digest, link target.
// Run-state files are normalized: the lock's contents (the PID of the last
// holder) are left out; last-run.json loses startedAt, durationMs, changed
// and bootID; installed.json loses mtimeNs and ino — after checking that
// they, and each recorded size, mode and sha256, describe the installed
// files as they are (the record must be in step with the tree: the next
// run trusts it without hashing).
func snapshotTree(root string) (treetest.Tree, error) {
	return treetest.Snapshot(root, func(rel, p string) (string, bool, error) {
		switch rel {
		case crashLockFile:
			return "(contents not compared)", true, nil
		case crashLastRun:
			d, err := normalizedLastRun(p)
			return d, true, err
		case crashRecordFile:
			d, err := normalizedRecord(root, p)
			return d, true, err
		}
		return "", false, nil
	})
}

func normalizedLastRun(p string) (string, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return "", fmt.Errorf("not JSON: %v", err)
	}
	for _, k := range []string{"startedAt", "durationMs", "changed", "bootID"} {
		delete(m, k)
	}
	norm, _ := json.Marshal(m) // map keys are sorted
	return "normalized " + string(norm), nil
}

// installRecord mirrors stages/artifacts' install record file.
type installRecord struct {
	Version   int `json:"version"`
	Artifacts map[string]struct {
		URL    string `json:"url"`
		Digest string `json:"digest"`
		Files  map[string]struct {
			SHA256  string `json:"sha256"`
			Size    int64  `json:"size"`
			Mode    string `json:"mode"`
			MtimeNs int64  `json:"mtimeNs"`
			Ino     uint64 `json:"ino"`
		} `json:"files"`
	} `json:"artifacts"`
}

func normalizedRecord(root, p string) (string, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	var rec installRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return "", fmt.Errorf("not JSON: %v", err)
	}
	var lines []string
	for name, a := range rec.Artifacts {
		for target, f := range a.Files {
			fi, err := os.Lstat(filepath.Join(root, target))
			if err != nil {
				return "", fmt.Errorf("records %s, which is missing: %v", target, err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if !fi.Mode().IsRegular() || fi.Size() != f.Size || st.Mtim.Nano() != f.MtimeNs || st.Ino != f.Ino ||
				fmt.Sprintf("%04o", uint32(fi.Mode().Perm())) != f.Mode {
				return "", fmt.Errorf("out of step with %s: recorded size %d mode %s mtime %d ino %d, file has %d %04o %d %d",
					target, f.Size, f.Mode, f.MtimeNs, f.Ino, fi.Size(), uint32(fi.Mode().Perm()), st.Mtim.Nano(), st.Ino)
			}
			sum, err := fileHash(filepath.Join(root, target), sha256.New)
			if err != nil {
				return "", err
			}
			if sum != f.SHA256 {
				return "", fmt.Errorf("out of step with %s: recorded sha256 %s, file has %s", target, f.SHA256, sum)
			}
			lines = append(lines, fmt.Sprintf("%s %s %s %s %s %d %s", name, a.URL, a.Digest, target, f.SHA256, f.Size, f.Mode))
		}
	}
	sort.Strings(lines)
	return fmt.Sprintf("normalized v%d %x", rec.Version, sha256.Sum256([]byte(strings.Join(lines, "\n")))), nil
}

// diffTrees lists the differences between want and got, one line each.
func diffTrees(want, got treetest.Tree) []string { return treetest.Diff(want, got) }

// leftovers lists temporary files of the host layer (".<name>.nodeprov-tmp-
// <hex>") and download staging files anywhere under root.
func leftovers(root string) []string {
	var out []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if strings.Contains(d.Name(), ".nodeprov-tmp-") || strings.HasPrefix(rel, crashStagingDir+"/") {
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// ---- the partial-file watcher ------------------------------------------------

// pathStates are what a watched path may hold while a run goes on: one of the
// entries (its state before the run or its final state), or nothing when
// absent is allowed.
type pathStates struct {
	entries []treeEntry
	absent  bool
}

// allowedStates is, for every file and symlink of before or after, what
// the path may hold during a run that takes the tree from before to after:
// its final state, its state before, and absence only when it did not exist
// before (an atomic replacement never leaves a gap) or is gone after.
// Directories are not watched: their mode is set after creation, which is
// not a partial file.
func allowedStates(before, after treetest.Tree) map[string]pathStates {
	out := map[string]pathStates{}
	add := func(p string, e treeEntry) {
		if e.Type != "file" && e.Type != "symlink" {
			return
		}
		s := out[p]
		for _, x := range s.entries {
			if x == e {
				return
			}
		}
		s.entries = append(s.entries, e)
		out[p] = s
	}
	for p, e := range after {
		add(p, e)
	}
	for p, e := range before {
		add(p, e)
	}
	for p, s := range out {
		_, existed := before[p]
		_, stays := after[p]
		s.absent = !existed || !stays
		out[p] = s
	}
	return out
}

// partialWatcher reads every watched path over and over while runs go on, and
// records any moment at which a path held something it may not: a regular
// file with other bytes (a partial or a wrong file), another type, mode or
// owner, a symlink with another target, or nothing where something was.
// Run-state files are checked to be whole JSON (last-run.json,
// installed.json: their bytes differ from run to run) or only for presence
// (the lock, rewritten in place by design: its contents are a hint).
type partialWatcher struct {
	root   string
	allow  map[string]pathStates
	paths  []string
	phase  atomic.Value // string: which run is going on
	start  time.Time
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	bad    []string
	sweeps int
	hashed int
	// digests caches file digests by inode, size, mtime and ctime, so an
	// unchanged file is not hashed on every sweep; a write in place changes
	// the size or the times.
	digests  map[string]versionDigest
	reported map[string]bool
}

type versionDigest struct {
	ino, size    int64
	mtime, ctime int64
	digest       string
}

func startWatcher(root string, allow map[string]pathStates, phase string) *partialWatcher {
	w := &partialWatcher{root: root, allow: allow, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{}),
		digests: map[string]versionDigest{}, reported: map[string]bool{}}
	w.phase.Store(phase)
	for p := range allow {
		w.paths = append(w.paths, p)
	}
	sort.Strings(w.paths)
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				w.sweep() // one last look at the final state
				return
			default:
			}
			w.sweep()
			w.mu.Lock()
			w.sweeps++
			w.mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	}()
	return w
}

func (w *partialWatcher) setPhase(p string) { w.phase.Store(p) }

// finish stops the watcher and returns what it found.
func (w *partialWatcher) finish() (bad []string, sweeps, hashed int) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bad, w.sweeps, w.hashed
}

func (w *partialWatcher) report(p, what string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	key := p + "\x00" + what
	if w.reported[key] {
		return
	}
	w.reported[key] = true
	if len(w.bad) < 20 {
		w.bad = append(w.bad, fmt.Sprintf("%s at %d ms (%s): %s", p, time.Since(w.start).Milliseconds(), w.phase.Load(), what))
	}
}

func (w *partialWatcher) sweep() {
	for _, rel := range w.paths {
		allow := w.allow[rel]
		p := filepath.Join(w.root, rel)
		fi, err := os.Lstat(p)
		if err != nil {
			if !allow.absent {
				w.report(rel, "absent, but it existed before the run and exists after it")
			}
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		got := treeEntry{Mode: fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky), UID: st.Uid, GID: st.Gid}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			got.Type, got.Mode = "symlink", 0
			if got.Target, err = os.Readlink(p); err != nil {
				continue // replaced meanwhile: the next sweep looks again
			}
		case fi.Mode().IsRegular():
			got.Type, got.Size = "file", fi.Size()
			switch rel {
			case crashLockFile:
				continue
			case crashLastRun, crashRecordFile:
				data, err := os.ReadFile(p)
				if err == nil && !json.Valid(data) {
					w.report(rel, fmt.Sprintf("not whole JSON (%d bytes)", len(data)))
				}
				continue
			}
			if got.Digest, err = w.digest(rel, p, st); err != nil {
				continue
			}
		default:
			got.Type = "other " + fi.Mode().Type().String()
		}
		ok := false
		for _, e := range allow.entries {
			ok = ok || e == got
		}
		if !ok {
			var want []string
			for _, e := range allow.entries {
				want = append(want, e.String())
			}
			w.report(rel, fmt.Sprintf("holds %s, want %s", got, strings.Join(want, " or ")))
		}
	}
}

// digest hashes the version of p that Lstat described, through the
// descriptor opened now: if the path was replaced in between (the inode
// differs) it returns an error and the next sweep looks again.
func (w *partialWatcher) digest(rel, p string, st *syscall.Stat_t) (string, error) {
	v := versionDigest{ino: int64(st.Ino), size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}
	if c := w.digests[rel]; c.digest != "" && c.ino == v.ino && c.size == v.size && c.mtime == v.mtime && c.ctime == v.ctime {
		return c.digest, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	ofi, err := f.Stat()
	if err != nil || ofi.Sys().(*syscall.Stat_t).Ino != st.Ino {
		return "", fmt.Errorf("replaced")
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	v.digest = hex.EncodeToString(h.Sum(nil))
	w.digests[rel] = v
	w.mu.Lock()
	w.hashed++
	w.mu.Unlock()
	return v.digest, nil
}

// ---- running nodeprov so it can be killed -----------------------------------

// killableRun is a nodeprov apply whose text output is read as it comes, so
// the test knows which stage is running and when the install stage began.
type killableRun struct {
	cmd     *exec.Cmd
	start   time.Time
	mu      sync.Mutex
	stage   string
	stageAt map[string]time.Duration // when each stage's line was printed
	started map[string]chan struct{} // closed when the stage's line is printed
	exited  chan struct{}            // closed when the process has been waited for
	out     bytes.Buffer
	waitErr error
	ran     time.Duration // from start to exit
}

func startApply(t *testing.T, root, spec string) *killableRun {
	t.Helper()
	cmd := nodeprovCommand(nil, "apply", "--root", root, spec)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	k := &killableRun{cmd: cmd, stageAt: map[string]time.Duration{}, started: map[string]chan struct{}{}, exited: make(chan struct{})}
	for _, name := range []string{"install", "files"} {
		k.started[name] = make(chan struct{})
	}
	k.start = time.Now()
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		t.Fatal(err)
	}
	pw.Close()
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			at := time.Since(k.start)
			k.mu.Lock()
			k.out.WriteString(line + "\n")
			// Stage lines are "[5/9] install".
			if strings.HasPrefix(line, "[") {
				if _, name, ok := strings.Cut(line, "] "); ok && !strings.Contains(name, " ") {
					k.stage = name
					k.stageAt[name] = at
					if c, ok := k.started[name]; ok {
						close(c)
						delete(k.started, name)
					}
				}
			}
			k.mu.Unlock()
		}
	}()
	go func() {
		k.waitErr = cmd.Wait()
		k.ran = time.Since(k.start)
		<-lines
		close(k.exited)
	}()
	return k
}

// waitStage waits until the stage's line is printed ("install" or
// "files") and returns when that was, or returns false when the run exits
// first.
func (k *killableRun) waitStage(name string) (time.Duration, bool) {
	k.mu.Lock()
	c, waiting := k.started[name]
	k.mu.Unlock()
	if waiting {
		select {
		case <-c:
		case <-k.exited:
			return 0, false
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	at, ok := k.stageAt[name]
	return at, ok
}

// kill sends SIGKILL to the run's process group unless it has already
// exited; it returns whether the kill landed and the stage running then.
func (k *killableRun) kill() (killed bool, stage string) {
	k.mu.Lock()
	stage = k.stage
	k.mu.Unlock()
	select {
	case <-k.exited:
		return false, stage
	default:
	}
	syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
	<-k.exited
	// Exited on its own in the instant before the signal: not a kill.
	if ws, ok := k.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return true, stage
	}
	return false, stage
}

func (k *killableRun) output() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.out.String()
}

// TestCrashCheckersCatchFaults shows that the crash test's checks can
// fail: the watcher reports a file written in place (seen part-way) and a
// wrong symlink target but nothing for a temp+rename write, snapshot
// refuses an install record out of step with the file it records, and
// leftovers finds temporary and staging files.
func TestCrashCheckersCatchFaults(t *testing.T) {
	ref := t.TempDir()
	payload := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{9}).Read(payload)
	if err := os.WriteFile(filepath.Join(ref, "bin"), payload, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("bin", filepath.Join(ref, "link")); err != nil {
		t.Fatal(err)
	}
	want, err := snapshotTree(ref)
	if err != nil {
		t.Fatal(err)
	}

	// In place, in two halves with a pause: the watcher must see the half.
	inPlace := t.TempDir()
	w := startWatcher(inPlace, allowedStates(nil, want), "in place")
	time.Sleep(20 * time.Millisecond)
	f, err := os.OpenFile(filepath.Join(inPlace, "bin"), os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(payload[:len(payload)/2])
	time.Sleep(100 * time.Millisecond)
	f.Write(payload[len(payload)/2:])
	f.Close()
	os.Symlink("elsewhere", filepath.Join(inPlace, "link"))
	time.Sleep(50 * time.Millisecond)
	bad, sweeps, _ := w.finish()
	joined := strings.Join(bad, "\n")
	if !strings.Contains(joined, "bin at") || !strings.Contains(joined, "link at") || sweeps == 0 {
		t.Errorf("partialWatcher missed a partial file or a wrong link (%d sweeps):\n%s", sweeps, joined)
	}

	// Atomic: temp file, rename; the final file and link only.
	atomic := t.TempDir()
	w = startWatcher(atomic, allowedStates(nil, want), "atomic")
	tmp := filepath.Join(atomic, ".bin.nodeprov-tmp-0123456789abcdef")
	f, err = os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(payload[:len(payload)/2])
	time.Sleep(50 * time.Millisecond)
	f.Write(payload[len(payload)/2:])
	f.Chmod(0o755)
	f.Close()
	if lo := leftovers(atomic); len(lo) != 1 {
		t.Errorf("leftovers: %v, want the temporary file", lo)
	}
	os.Rename(tmp, filepath.Join(atomic, "bin"))
	os.Symlink("bin", filepath.Join(atomic, "link"))
	time.Sleep(50 * time.Millisecond)
	if bad, _, hashed := w.finish(); len(bad) != 0 || hashed == 0 {
		t.Errorf("partialWatcher flagged an atomic write (hashed %d versions): %v", hashed, bad)
	}
	got, err := snapshotTree(atomic)
	if err != nil || len(diffTrees(want, got)) != 0 {
		t.Errorf("identical trees differ: %v %v", err, diffTrees(want, got))
	}

	// An install record whose inode is not the file's is out of step.
	st, _ := os.Stat(filepath.Join(atomic, "bin"))
	ino := st.Sys().(*syscall.Stat_t).Ino
	sum, _ := fileHash(filepath.Join(atomic, "bin"), sha256.New)
	rec := func(ino uint64) string {
		return fmt.Sprintf(`{"version":1,"artifacts":{"x":{"url":"u","digest":"d","files":{"/bin":{"sha256":%q,"size":%d,"mode":"0755","mtimeNs":%d,"ino":%d}}}}}`,
			sum, st.Size(), st.ModTime().UnixNano(), ino)
	}
	recPath := filepath.Join(atomic, filepath.FromSlash(crashRecordFile))
	os.MkdirAll(filepath.Dir(recPath), 0o755)
	os.WriteFile(recPath, []byte(rec(ino)), 0o644)
	if _, err := snapshotTree(atomic); err != nil {
		t.Errorf("a record in step is refused: %v", err)
	}
	os.WriteFile(recPath, []byte(rec(ino+1)), 0o644)
	if _, err := snapshotTree(atomic); err == nil || !strings.Contains(err.Error(), "out of step") {
		t.Errorf("a record out of step is accepted: %v", err)
	}
	staging := filepath.Join(atomic, filepath.FromSlash(crashStagingDir), "dl-1-2")
	os.MkdirAll(filepath.Dir(staging), 0o700)
	os.WriteFile(staging, nil, 0o600)
	if lo := leftovers(atomic); len(lo) != 1 || lo[0] != crashStagingDir+"/dl-1-2" {
		t.Errorf("leftovers: %v, want the staging file", lo)
	}
}
