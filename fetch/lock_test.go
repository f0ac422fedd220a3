package fetch

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// waitProgress records Waiting calls and ignores download progress.
type waitProgress struct{ waited chan string }

func newWaitProgress() *waitProgress { return &waitProgress{waited: make(chan string, 16)} }

func (w *waitProgress) Start(string, int64) Tracker { return nopTracker{} }
func (w *waitProgress) Waiting(name string)         { w.waited <- name }

type nopTracker struct{}

func (nopTracker) Advance(int64) {}
func (nopTracker) Done(error)    {}

// gate holds the first request for one path until it is opened; later
// requests pass.
type gate struct {
	path    string
	once    sync.Once
	arrived chan struct{}
	open    chan struct{}
	opened  sync.Once
}

func newGate(path string) *gate {
	return &gate{path: path, arrived: make(chan struct{}), open: make(chan struct{})}
}

func (g *gate) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == g.path {
			first := false
			g.once.Do(func() { first = true; close(g.arrived) })
			if first {
				select {
				case <-g.open:
				case <-r.Context().Done():
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (g *gate) release() { g.opened.Do(func() { close(g.open) }) }

// lockFixture is one artifact served with a sha512 checksum file and a
// detached signature.
type lockFixture struct {
	art   []byte
	files map[string][]byte
	kr    *Keyring
}

func newLockFixture(t *testing.T) *lockFixture {
	key := newTestKey(t, "maintainer")
	art := payload(200_000)
	return &lockFixture{
		art: art,
		files: map[string][]byte{
			"/art":        art,
			"/art.sha512": []byte(sha512Of(art).Hex + "  art\n"),
			"/art.asc":    detachSign(t, key, art, nil),
		},
		kr: keyringOf(t, key),
	}
}

// requestKinds are the ways a request gets its digest; each locks on what
// it knows before downloading.
func (fx *lockFixture) requestKinds(base string) []struct {
	name  string
	req   Request
	trust string
} {
	return []struct {
		name  string
		req   Request
		trust string
	}{
		{"pinned sha256", Request{URL: base + "/art", Pinned: pin(sha256Of(fx.art))}, TrustPinned},
		{"pinned sha512", Request{URL: base + "/art", Pinned: pin(sha512Of(fx.art))}, TrustPinned},
		{"checksum file", Request{URL: base + "/art", Checksum: &ChecksumSource{URL: base + "/art.sha512"}}, TrustSameOrigin},
		{"signature only", Request{URL: base + "/art", Signature: &SignatureSource{URL: base + "/art.asc", Keyring: fx.kr}}, TrustSigned},
	}
}

// TestSharedCacheDownloadsOnce: two Fetchers on one cache (two processes
// sharing --cache), and two requests of one Fetcher, ask for the same
// artifact at once. The first download is held at the server until the
// other fetch reports that it waits: without the per-artifact lock the
// other fetch would send its own request instead. Each artifact is
// downloaded once, the waiter gets it from the cache, and no lock or
// staging file remains.
func TestSharedCacheDownloadsOnce(t *testing.T) {
	fx := newLockFixture(t)
	for _, shape := range []string{"two fetchers", "one fetcher, two requests"} {
		for i := range fx.requestKinds("") {
			kind := fx.requestKinds("")[i].name
			t.Run(shape+"/"+kind, func(t *testing.T) {
				g := newGate("/art")
				srv, hits := newServer(t, g.wrap(filesHandler(fx.files)))
				k := fx.requestKinds(srv.URL)[i]
				cache := t.TempDir()
				progress := newWaitProgress()
				newFetcher := func() *Fetcher {
					return &Fetcher{CacheDir: cache, Parallel: 2, Proxy: noProxy, Progress: progress, IdleTimeout: 10 * time.Second}
				}

				type outcome struct {
					res []Result
					err error
				}
				done := make(chan outcome, 2)
				fetch := func(f *Fetcher, reqs ...Request) {
					res, err := f.Fetch(context.Background(), reqs)
					done <- outcome{res, err}
				}
				calls := 1
				if shape == "two fetchers" {
					calls = 2
					go fetch(newFetcher(), k.req)
					<-g.arrived
					go fetch(newFetcher(), k.req)
				} else {
					go fetch(newFetcher(), k.req, k.req)
				}
				select {
				case name := <-progress.waited:
					if name != "art" {
						t.Errorf("Waiting(%q), want art", name)
					}
				case o := <-done:
					t.Errorf("a fetch finished while the first download was held, without waiting (err %v)", o.err)
					done <- o
				case <-time.After(20 * time.Second):
					t.Error("no fetch waited for the held download")
				}
				g.release()
				var results []Result
				for range calls {
					o := <-done
					if o.err != nil {
						t.Fatal(o.err)
					}
					results = append(results, o.res...)
				}

				if n := hits.count("/art"); n != 1 {
					t.Errorf("artifact downloaded %d times, want 1", n)
				}
				fromCache := 0
				for _, r := range results {
					if r.SHA256 != sha256Of(fx.art).Hex || r.Path != filepath.Join(cache, SHA256, r.SHA256) || r.Trust != k.trust {
						t.Errorf("result %+v", r)
					}
					if r.FromCache {
						fromCache++
					}
				}
				if fromCache != 1 {
					t.Errorf("%d of 2 results from the cache, want 1", fromCache)
				}
				for _, d := range []string{locksDir, tmpDir} {
					if names := dirEntries(t, filepath.Join(cache, d)); len(names) != 0 {
						t.Errorf("%s/ left: %v", d, names)
					}
				}
			})
		}
	}
}

// TestEntryLockWaitHonoursContext: a fetch waiting for another holder of
// the artifact's lock returns when its context is canceled, without a
// request, and leaves the holder's lock alone.
func TestEntryLockWaitHonoursContext(t *testing.T) {
	fx := newLockFixture(t)
	srv, hits := newServer(t, filesHandler(fx.files))
	for _, k := range fx.requestKinds(srv.URL) {
		if k.req.Checksum != nil {
			continue // locks on the same digest as "pinned sha512"
		}
		t.Run(k.name, func(t *testing.T) {
			cache := t.TempDir()
			name := urlLockName(k.req.URL)
			if k.req.Pinned != nil {
				name = digestLockName(*k.req.Pinned)
			}
			held, err := acquireEntryLock(context.Background(), cache, name, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer held.release()
			before := hits.count("/art")
			progress := newWaitProgress()
			f := &Fetcher{CacheDir: cache, Proxy: noProxy, Progress: progress}
			ctx, cancel := context.WithCancel(context.Background())
			go func() { <-progress.waited; cancel() }()
			_, err = f.Fetch(ctx, []Request{k.req})
			if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "waiting for another download") {
				t.Fatalf("err = %v, want a cancellation while waiting", err)
			}
			if hits.count("/art") != before {
				t.Error("the waiting fetch downloaded")
			}
			if !namesFile(held.path, held.f) {
				t.Error("the holder's lock file was replaced")
			}
		})
	}
}

// TestEntryLockHolderKilled: a process that holds an artifact's lock and is
// killed (SIGKILL) lets the waiting fetch go on: the kernel drops the
// flock. The lock file a killed holder leaves is reused and removed, and a
// stale one no fetch touched is swept when a Fetcher prepares the cache.
func TestEntryLockHolderKilled(t *testing.T) {
	fx := newLockFixture(t)
	srv, hits := newServer(t, filesHandler(fx.files))
	req := Request{URL: srv.URL + "/art", Pinned: pin(sha256Of(fx.art))}
	name := digestLockName(*req.Pinned)
	cache := t.TempDir()

	holder := startLockHolder(t, cache, name)
	progress := newWaitProgress()
	f := &Fetcher{CacheDir: cache, Proxy: noProxy, Progress: progress}
	done := make(chan error, 1)
	var res []Result
	go func() {
		var err error
		res, err = f.Fetch(context.Background(), []Request{req})
		done <- err
	}()
	select {
	case <-progress.waited:
	case err := <-done:
		t.Fatalf("fetch did not wait for the other process's lock: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("fetch neither waited nor finished")
	}
	if hits.count("/art") != 0 {
		t.Fatal("downloaded while another process held the lock")
	}
	holder.kill(t)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("fetch still waits after the holder was killed")
	}
	if res[0].FromCache || hits.count("/art") != 1 {
		t.Fatalf("result %+v after %d requests, want one download", res[0], hits.count("/art"))
	}
	if names := dirEntries(t, filepath.Join(cache, locksDir)); len(names) != 0 {
		t.Errorf("locks/ = %v after the fetch", names)
	}

	// A holder killed with no one waiting leaves its file; the next
	// Fetcher to prepare the cache removes it.
	other := digestLockName(sha256Of([]byte("other")))
	startLockHolder(t, cache, other).kill(t)
	if names := dirEntries(t, filepath.Join(cache, locksDir)); len(names) != 1 || names[0] != other {
		t.Fatalf("locks/ = %v, want the killed holder's file", names)
	}
	if err := (&Fetcher{CacheDir: cache, Proxy: noProxy}).Prepare(); err != nil {
		t.Fatal(err)
	}
	if names := dirEntries(t, filepath.Join(cache, locksDir)); len(names) != 0 {
		t.Errorf("locks/ = %v, want the stale lock swept", names)
	}
}

// lockHolder is a child process (this test binary) holding a lock.
type lockHolder struct{ cmd *exec.Cmd }

func startLockHolder(t *testing.T, cache, name string) *lockHolder {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHolderProcess$")
	cmd.Env = append(os.Environ(), "NODEPROV_LOCK_HOLDER_CACHE="+cache, "NODEPROV_LOCK_HOLDER_NAME="+name)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &lockHolder{cmd: cmd}
	t.Cleanup(func() { h.kill(t) })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("lock holder: %q %v", line, err)
	}
	return h
}

func (h *lockHolder) kill(t *testing.T) {
	if h.cmd.ProcessState != nil {
		return
	}
	h.cmd.Process.Signal(syscall.SIGKILL)
	h.cmd.Wait()
}

// TestLockHolderProcess is the child of startLockHolder: it takes the lock,
// says so, and waits to be killed.
func TestLockHolderProcess(t *testing.T) {
	cache, name := os.Getenv("NODEPROV_LOCK_HOLDER_CACHE"), os.Getenv("NODEPROV_LOCK_HOLDER_NAME")
	if cache == "" {
		t.Skip("the child process of TestEntryLockHolderKilled")
	}
	if _, err := acquireEntryLock(context.Background(), cache, name, nil); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	time.Sleep(time.Minute)
	os.Exit(2)
}

// TestSweepLocks: preparing a cache removes lock files no one holds, keeps
// held ones, and removes links in locks/ without following them.
func TestSweepLocks(t *testing.T) {
	cache, victim := t.TempDir(), t.TempDir()
	if err := cacheDirs(cache); err != nil {
		t.Fatal(err)
	}
	held, err := acquireEntryLock(context.Background(), cache, "sha256-held.lock", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer held.release()
	dir := filepath.Join(cache, locksDir)
	os.WriteFile(filepath.Join(dir, "sha256-stale.lock"), nil, 0o600)
	os.WriteFile(filepath.Join(victim, "keep"), []byte("keep"), 0o644)
	os.Symlink(filepath.Join(victim, "keep"), filepath.Join(dir, "sha256-link.lock"))
	os.Symlink(victim, filepath.Join(dir, "dirlink"))
	sweepLocks(cache)
	if names := dirEntries(t, dir); len(names) != 1 || names[0] != "sha256-held.lock" {
		t.Errorf("locks/ = %v, want only the held lock", names)
	}
	if b, err := os.ReadFile(filepath.Join(victim, "keep")); err != nil || string(b) != "keep" {
		t.Errorf("a link's target was changed: %q %v", b, err)
	}
	if !namesFile(held.path, held.f) {
		t.Error("the held lock's file was replaced")
	}
}

// TestSignatureOnlyURLIndex: an artifact only a detached signature verifies
// is found again through the URL index (another Fetcher on the cache
// downloads only the signature), and when the artifact is replaced
// upstream, the cached bytes fail the new signature and are downloaded
// again rather than trusted.
func TestSignatureOnlyURLIndex(t *testing.T) {
	fx := newLockFixture(t)
	files := map[string][]byte{}
	var mu sync.Mutex
	srv, hits := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		h := filesHandler(files)
		mu.Unlock()
		h(w, r)
	}))
	for p, b := range fx.files {
		files[p] = b
	}
	req := Request{URL: srv.URL + "/art", Signature: &SignatureSource{URL: srv.URL + "/art.asc", Keyring: fx.kr}}
	cache := t.TempDir()
	fetch := func() Result {
		t.Helper()
		res, err := (&Fetcher{CacheDir: cache, Proxy: noProxy}).Fetch(context.Background(), []Request{req})
		if err != nil {
			t.Fatal(err)
		}
		return res[0]
	}
	first := fetch()
	second := fetch()
	if first.FromCache || !second.FromCache || second.Path != first.Path || second.Trust != TrustSigned ||
		second.Digest != sha256Of(fx.art) || second.SignedBy != first.SignedBy {
		t.Fatalf("first %+v\nsecond %+v", first, second)
	}
	if hits.count("/art") != 1 || hits.count("/art.asc") != 2 {
		t.Fatalf("requests %v, want the artifact once and its signature twice", hits.counts)
	}

	key := newTestKey(t, "maintainer-2")
	next := append(bytes.Clone(fx.art), "v2"...)
	mu.Lock()
	files["/art"] = next
	files["/art.asc"] = detachSign(t, key, next, nil)
	mu.Unlock()
	req.Signature.Keyring = keyringOf(t, key)
	third := fetch()
	if third.FromCache || third.SHA256 != sha256Of(next).Hex || hits.count("/art") != 2 {
		t.Fatalf("after the upstream change: %+v (%d artifact requests)", third, hits.count("/art"))
	}
	if fourth := fetch(); !fourth.FromCache || fourth.SHA256 != third.SHA256 {
		t.Fatalf("the index does not follow the new download: %+v", fourth)
	}
	if names := dirEntries(t, filepath.Join(cache, urlsDir)); len(names) != 1 {
		t.Errorf("urls/ = %v, want one entry", names)
	}
}

// TestCacheHitTakesNoLock: an artifact already in the cache is used
// without taking its lock, so a complete cache where no lock can be made
// (read-only media; here locks/ is a regular file) stays usable, while a
// miss fails naming the lock directory.
func TestCacheHitTakesNoLock(t *testing.T) {
	fx := newLockFixture(t)
	srv, hits := newServer(t, filesHandler(fx.files))
	cache := t.TempDir()
	kinds := fx.requestKinds(srv.URL)
	var reqs []Request
	for _, k := range kinds {
		if k.req.Signature == nil { // signature-only artifacts lock on their URL to consult the index
			reqs = append(reqs, k.req)
		}
	}
	if _, err := (&Fetcher{CacheDir: cache, Proxy: noProxy}).Fetch(context.Background(), reqs); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(cache, locksDir)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cache, locksDir), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	before := hits.count("/art")
	for _, verify := range []bool{false, true} {
		res, err := (&Fetcher{CacheDir: cache, Proxy: noProxy, VerifyCached: verify}).Fetch(context.Background(), reqs)
		if err != nil {
			t.Fatalf("VerifyCached=%v: %v", verify, err)
		}
		for _, r := range res {
			if !r.FromCache {
				t.Errorf("VerifyCached=%v: %+v not from the cache", verify, r)
			}
		}
	}
	if hits.count("/art") != before {
		t.Error("a cache hit downloaded")
	}
	miss := Request{URL: srv.URL + "/art", Pinned: pin(sha256Of([]byte("not cached")))}
	_, err := (&Fetcher{CacheDir: cache, Proxy: noProxy}).Fetch(context.Background(), []Request{miss})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(cache, locksDir)) {
		t.Errorf("a miss with no lock directory: %v", err)
	}
}
