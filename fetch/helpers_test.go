package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// countingHandler counts requests per path and fails the test on anything
// but GET (go-getter's HEAD probe must be off).
type countingHandler struct {
	t    testing.TB
	next http.Handler

	mu     sync.Mutex
	counts map[string]int
}

func (c *countingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		c.t.Errorf("unexpected %s %s", r.Method, r.URL)
	}
	c.mu.Lock()
	c.counts[r.URL.Path]++
	c.mu.Unlock()
	c.next.ServeHTTP(w, r)
}

func (c *countingHandler) count(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[path]
}

func (c *countingHandler) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.counts {
		n += v
	}
	return n
}

// newServer starts a loopback HTTP server that counts requests.
func newServer(t testing.TB, h http.Handler) (*httptest.Server, *countingHandler) {
	t.Helper()
	c := &countingHandler{t: t, next: h, counts: map[string]int{}}
	s := httptest.NewServer(c)
	t.Cleanup(s.Close)
	return s, c
}

// filesHandler serves fixed files with a Content-Length.
func filesHandler(files map[string][]byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	}
}

// waits records retry waits instead of sleeping.
type waits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *waits) sleep(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	w.d = append(w.d, d)
	w.mu.Unlock()
	return ctx.Err()
}

func (w *waits) all() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.d...)
}

func noProxy(*http.Request) (*url.URL, error) { return nil, nil }

// newTestFetcher returns a Fetcher on a fresh cache that never sleeps
// between retries and ignores proxy settings in the environment.
func newTestFetcher(t testing.TB) (*Fetcher, *waits) {
	t.Helper()
	w := &waits{}
	return &Fetcher{
		CacheDir:    t.TempDir(),
		IdleTimeout: 5 * time.Second,
		Proxy:       noProxy,
		sleep:       w.sleep,
	}, w
}

func sha256Of(b []byte) Digest {
	s := sha256.Sum256(b)
	return Digest{SHA256, hex.EncodeToString(s[:])}
}

func sha512Of(b []byte) Digest {
	s := sha512.Sum512(b)
	return Digest{SHA512, hex.EncodeToString(s[:])}
}

func pin(d Digest) *Digest { return &d }

// payload returns n deterministic bytes.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// assertNothingKept checks that a failed fetch left no cache entry and no
// staging file.
func assertNothingKept(t testing.TB, cacheDir string) {
	t.Helper()
	for _, d := range []string{SHA256, SHA512, tmpDir} {
		if names := dirEntries(t, filepath.Join(cacheDir, d)); len(names) != 0 {
			t.Fatalf("%s/ not empty after a failed fetch: %v", d, names)
		}
	}
}

var fixedTime = time.Unix(1_700_000_000, 0)

func bytesReadSeeker(b []byte) *bytes.Reader { return bytes.NewReader(b) }
