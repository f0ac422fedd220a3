package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestFetchPinned(t *testing.T) {
	body := payload(100_000)
	srv, hits := newServer(t, filesHandler(map[string][]byte{"/containerd.tar.gz": body}))
	tests := []struct {
		name string
		pin  Digest
	}{
		{"sha256", sha256Of(body)},
		{"sha512", sha512Of(body)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := newTestFetcher(t)
			res, err := f.Fetch(context.Background(), []Request{{URL: srv.URL + "/containerd.tar.gz", Pinned: pin(tt.pin)}})
			if err != nil {
				t.Fatal(err)
			}
			r := res[0]
			if r.Trust != TrustPinned || r.FromCache || r.Bytes != int64(len(body)) || r.Digest != tt.pin {
				t.Fatalf("result = %+v", r)
			}
			if r.SHA256 != sha256Of(body).Hex || r.Path != filepath.Join(f.CacheDir, SHA256, r.SHA256) {
				t.Fatalf("path %s sha256 %s", r.Path, r.SHA256)
			}
			fi, err := os.Lstat(r.Path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o444 || !fi.Mode().IsRegular() {
				t.Fatalf("cache entry mode %v, want regular 0444", fi.Mode())
			}
			got, _ := os.ReadFile(r.Path)
			if !bytes.Equal(got, body) {
				t.Fatal("cached bytes differ")
			}
			if p, ok := f.Lookup(tt.pin); !ok || p != r.Path {
				t.Fatalf("Lookup(%v) = %q, %v", tt.pin, p, ok)
			}
			if names := dirEntries(t, filepath.Join(f.CacheDir, tmpDir)); len(names) != 0 {
				t.Fatalf("staging left behind: %v", names)
			}
		})
	}
	if hits.count("/containerd.tar.gz") != 2 {
		t.Fatalf("requests = %d, want 2 (one per fresh cache)", hits.count("/containerd.tar.gz"))
	}
}

func TestFetchWrongDigest(t *testing.T) {
	body := payload(50_000)
	srv, hits := newServer(t, filesHandler(map[string][]byte{"/runc.amd64": body}))
	f, _ := newTestFetcher(t)
	want := sha256Of([]byte("something else"))
	u := srv.URL + "/runc.amd64"
	_, err := f.Fetch(context.Background(), []Request{{URL: u, Pinned: &want}})
	var mm *MismatchError
	if !errors.As(err, &mm) || !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("err = %v, want a MismatchError", err)
	}
	t.Logf("error: %v", err)
	msg := err.Error()
	for _, s := range []string{u, "want " + want.String(), "got " + sha256Of(body).String()} {
		if !strings.Contains(msg, s) {
			t.Errorf("error %q does not contain %q", msg, s)
		}
	}
	assertNothingKept(t, f.CacheDir)
	if n := hits.count("/runc.amd64"); n != 1 {
		t.Fatalf("requests = %d: a digest mismatch must not be retried", n)
	}
}

func TestFetchRetriesTransientFailures(t *testing.T) {
	body := payload(200_000)
	tests := []struct {
		name  string
		first func(w http.ResponseWriter, r *http.Request)
	}{
		{"connection dropped mid-body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(http.StatusOK)
			w.Write(body[:len(body)/3])
			w.(http.Flusher).Flush()
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			conn.Close()
		}},
		{"503", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "busy", http.StatusServiceUnavailable) }},
		{"500", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "oops", http.StatusInternalServerError) }},
		{"408", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "slow", http.StatusRequestTimeout) }},
		{"429 without Retry-After", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "slow down", http.StatusTooManyRequests) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			srv, hits := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) == 1 {
					tt.first(w, r)
					return
				}
				w.Write(body)
			}))
			f, waits := newTestFetcher(t)
			res, err := f.Fetch(context.Background(), []Request{{URL: srv.URL + "/a", Pinned: pin(sha256Of(body))}})
			if err != nil {
				t.Fatal(err)
			}
			if res[0].Bytes != int64(len(body)) {
				t.Fatalf("bytes = %d", res[0].Bytes)
			}
			if hits.count("/a") != 2 {
				t.Fatalf("requests = %d, want 2", hits.count("/a"))
			}
			w := waits.all()
			if len(w) != 1 || w[0] < backoffBase/2 || w[0] > backoffBase {
				t.Fatalf("waits = %v, want one backoff in [%v, %v]", w, backoffBase/2, backoffBase)
			}
			if names := dirEntries(t, filepath.Join(f.CacheDir, tmpDir)); len(names) != 0 {
				t.Fatalf("staging left behind: %v", names)
			}
		})
	}
}

func TestFetchNotRetried(t *testing.T) {
	for _, code := range []int{http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound, http.StatusGone} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			srv, hits := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "no", code)
			}))
			f, waits := newTestFetcher(t)
			_, err := f.Fetch(context.Background(), []Request{{URL: srv.URL + "/x", Pinned: pin(sha256Of(nil))}})
			var se *StatusError
			if !errors.As(err, &se) || se.Code != code {
				t.Fatalf("err = %v, want StatusError %d", err, code)
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), srv.URL+"/x") {
				t.Fatalf("error %q does not name the url", err)
			}
			if hits.total() != 1 || len(waits.all()) != 0 {
				t.Fatalf("requests = %d waits = %v: %d must not be retried", hits.total(), waits.all(), code)
			}
			assertNothingKept(t, f.CacheDir)
		})
	}
}

func TestFetchRetryAfter(t *testing.T) {
	body := []byte("payload")
	tests := []struct {
		name       string
		retryAfter func() string
		limit      time.Duration
		min, max   time.Duration
	}{
		{"seconds", func() string { return "7" }, time.Minute, 7 * time.Second, 7 * time.Second},
		{"http date", func() string { return time.Now().Add(20 * time.Second).UTC().Format(http.TimeFormat) }, time.Minute, 18 * time.Second, 20 * time.Second},
		{"capped", func() string { return "86400" }, 10 * time.Second, 10 * time.Second, 10 * time.Second},
		{"date in the past", func() string { return "Mon, 02 Jan 2006 15:04:05 GMT" }, time.Minute, backoffBase / 2, backoffBase},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			srv, hits := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) == 1 {
					w.Header().Set("Retry-After", tt.retryAfter())
					http.Error(w, "slow down", http.StatusTooManyRequests)
					return
				}
				w.Write(body)
			}))
			f, waits := newTestFetcher(t)
			f.MaxRetryAfter = tt.limit
			if _, err := f.Fetch(context.Background(), []Request{{URL: srv.URL + "/a", Pinned: pin(sha256Of(body))}}); err != nil {
				t.Fatal(err)
			}
			w := waits.all()
			if hits.total() != 2 || len(w) != 1 {
				t.Fatalf("requests %d waits %v", hits.total(), w)
			}
			if w[0] < tt.min || w[0] > tt.max {
				t.Fatalf("waited %v, want within [%v, %v]", w[0], tt.min, tt.max)
			}
		})
	}
}

func TestFetchIdleTimeout(t *testing.T) {
	body := payload(64 << 10)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv, hits := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body[:1000])
		w.(http.Flusher).Flush()
		select { // stall
		case <-r.Context().Done():
		case <-release:
		}
	}))
	f, waits := newTestFetcher(t)
	f.IdleTimeout = 200 * time.Millisecond
	f.Retries = 1
	start := time.Now()
	_, err := f.Fetch(context.Background(), []Request{{URL: srv.URL + "/stall", Pinned: pin(sha256Of(body))}})
	if !errors.Is(err, ErrIdleTimeout) {
		t.Fatalf("err = %v, want ErrIdleTimeout", err)
	}
	if !strings.Contains(err.Error(), "idle timeout: no data for 200ms after 1000 bytes") || !strings.Contains(err.Error(), srv.URL+"/stall") {
		t.Fatalf("unclear error: %v", err)
	}
	t.Logf("error: %v", err)
	if hits.total() != 2 || len(waits.all()) != 1 {
		t.Fatalf("requests %d waits %v: an idle timeout is transient and must be retried", hits.total(), waits.all())
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("idle timeout took %v", time.Since(start))
	}
	assertNothingKept(t, f.CacheDir)
}

// A slow but steady download must not hit the idle timeout even when it
// takes far longer than the timeout in total.
func TestFetchSlowButSteadyIsNotIdle(t *testing.T) {
	body := payload(20 * 1000)
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		for i := 0; i < len(body); i += 1000 {
			w.Write(body[i : i+1000])
			w.(http.Flusher).Flush()
			time.Sleep(40 * time.Millisecond)
		}
	}))
	f, _ := newTestFetcher(t)
	f.IdleTimeout = 200 * time.Millisecond
	f.Retries = -1
	if _, err := f.Fetch(context.Background(), []Request{{URL: srv.URL + "/slow", Pinned: pin(sha256Of(body))}}); err != nil {
		t.Fatalf("steady 800ms download failed with a 200ms idle timeout: %v", err)
	}
}

func TestFetchTruncatedContentLengthLie(t *testing.T) {
	body := payload(10_000)
	srv, hits := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Claims the full length, sends 40% and ends the response.
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body[:4000])
	}))
	f, _ := newTestFetcher(t)
	f.Retries = 2
	_, err := f.Fetch(context.Background(), []Request{{URL: srv.URL + "/t", Pinned: pin(sha256Of(body))}})
	if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "truncated") || !strings.Contains(err.Error(), "4000 of 10000 bytes") {
		t.Fatalf("err = %v, want a truncation error", err)
	}
	t.Logf("error: %v", err)
	if errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("a truncated body must be reported as truncated, not as a digest mismatch: %v", err)
	}
	if hits.total() != 3 {
		t.Fatalf("requests = %d, want 3 (truncation is retried)", hits.total())
	}
	assertNothingKept(t, f.CacheDir)
}

func TestFetchSizeCap(t *testing.T) {
	body := payload(5000)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		wantMsg string
	}{
		{"content-length above cap", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body)
		}, "Content-Length 5000 is above the 1000 byte cap"},
		{"chunked body above cap", func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i < len(body); i += 500 {
				w.Write(body[i : i+500])
				w.(http.Flusher).Flush()
			}
		}, "more than 1000 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, hits := newServer(t, tt.handler)
			f, _ := newTestFetcher(t)
			_, err := f.Fetch(context.Background(), []Request{{URL: srv.URL + "/big", Pinned: pin(sha256Of(body[:1000])), MaxSize: 1000}})
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("err = %v, want ErrTooLarge with %q", err, tt.wantMsg)
			}
			t.Logf("error: %v", err)
			if hits.total() != 1 {
				t.Fatalf("requests = %d: a size cap is not retried", hits.total())
			}
			assertNothingKept(t, f.CacheDir)
		})
	}
}

func TestFetchCacheHitMakesNoRequests(t *testing.T) {
	body := payload(30_000)
	srv, hits := newServer(t, filesHandler(map[string][]byte{"/a": body}))
	for _, d := range []Digest{sha256Of(body), sha512Of(body)} {
		t.Run(d.Algorithm, func(t *testing.T) {
			cache := t.TempDir()
			before := hits.total()
			first := &Fetcher{CacheDir: cache, Proxy: noProxy}
			if _, err := first.Fetch(context.Background(), []Request{{URL: srv.URL + "/a", Pinned: pin(d)}}); err != nil {
				t.Fatal(err)
			}
			if hits.total() != before+1 {
				t.Fatalf("first fetch made %d requests", hits.total()-before)
			}
			// A new Fetcher (a new run) on the same cache.
			second := &Fetcher{CacheDir: cache, Proxy: noProxy, VerifyCached: true}
			res, err := second.Fetch(context.Background(), []Request{{URL: srv.URL + "/a", Pinned: pin(d)}})
			if err != nil {
				t.Fatal(err)
			}
			if hits.total() != before+1 {
				t.Fatalf("cache hit made %d HTTP requests, want 0", hits.total()-before-1)
			}
			if !res[0].FromCache || res[0].SHA256 != sha256Of(body).Hex || res[0].Bytes != int64(len(body)) {
				t.Fatalf("result = %+v", res[0])
			}
		})
	}
}

func TestFetchVerifyCachedReplacesCorruptEntry(t *testing.T) {
	body := payload(1000)
	srv, hits := newServer(t, filesHandler(map[string][]byte{"/a": body}))
	f, _ := newTestFetcher(t)
	d := sha256Of(body)
	p := filepath.Join(f.CacheDir, SHA256, d.Hex)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte("corrupt"), 0o444); err != nil {
		t.Fatal(err)
	}
	f.VerifyCached = true
	res, err := f.Fetch(context.Background(), []Request{{URL: srv.URL + "/a", Pinned: &d}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].FromCache || hits.total() != 1 {
		t.Fatalf("corrupt entry trusted: %+v", res[0])
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, body) {
		t.Fatal("corrupt entry not replaced")
	}
}

func TestFetchContentEncodingNotDecoded(t *testing.T) {
	// A .tar.gz served with "Content-Encoding: gzip": the bytes on disk
	// must be exactly the bytes sent.
	gz := []byte{0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ae := r.Header.Get("Accept-Encoding"); ae != "" {
			t.Errorf("client sent Accept-Encoding %q", ae)
		}
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Type", "application/gzip")
		w.Write(gz)
	}))
	f, _ := newTestFetcher(t)
	res, err := f.Fetch(context.Background(), []Request{{URL: srv.URL + "/x.tar.gz", Pinned: pin(sha256Of(gz))}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(res[0].Path); !bytes.Equal(got, gz) {
		t.Fatalf("stored %x, want the gzip bytes as sent", got)
	}
}

func TestFetchNoDigest(t *testing.T) {
	srv, hits := newServer(t, filesHandler(nil))
	f, _ := newTestFetcher(t)
	_, err := f.Fetch(context.Background(), []Request{{URL: srv.URL + "/x"}})
	if !errors.Is(err, ErrNoDigest) || !strings.Contains(err.Error(), "run nodeprov lock") {
		t.Fatalf("err = %v", err)
	}
	if hits.total() != 0 {
		t.Fatal("a request without a digest must not download")
	}
}

func TestFetchBadURLs(t *testing.T) {
	srv, hits := newServer(t, filesHandler(nil))
	d := sha256Of(nil)
	tests := []string{
		"git::" + srv.URL + "/x",
		"file::" + srv.URL + "/etc/passwd",
		srv.URL + "/a//b",
		srv.URL + "/a?checksum=sha256:" + d.Hex,
		srv.URL + "/a.tar.gz?archive=false",
		srv.URL + "/a#frag",
		"ftp://127.0.0.1/x",
		"s3::https://bucket/x",
		"file://otherhost/etc/passwd",
		"relative/path",
		"https://",
	}
	for _, u := range tests {
		t.Run(u, func(t *testing.T) {
			f, _ := newTestFetcher(t)
			_, err := f.Fetch(context.Background(), []Request{{URL: u, Pinned: &d}})
			if !errors.Is(err, ErrBadURL) {
				t.Fatalf("err = %v, want ErrBadURL", err)
			}
		})
	}
	if hits.total() != 0 {
		t.Fatalf("%d requests for refused urls", hits.total())
	}
}

func TestFetchFileURLCopies(t *testing.T) {
	src := filepath.Join(t.TempDir(), "runsc")
	body := payload(12345)
	if err := os.WriteFile(src, body, 0o755); err != nil {
		t.Fatal(err)
	}
	f, _ := newTestFetcher(t)
	res, err := f.Fetch(context.Background(), []Request{{URL: "file://" + src, Pinned: pin(sha512Of(body))}})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(res[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSymlink != 0 || !fi.Mode().IsRegular() {
		t.Fatalf("cache entry is %v, want a regular file (a copy)", fi.Mode())
	}
	// Changing the source afterwards does not change the cache.
	os.WriteFile(src, []byte("changed"), 0o755)
	if got, _ := os.ReadFile(res[0].Path); !bytes.Equal(got, body) {
		t.Fatal("cache entry follows the source")
	}
	if res[0].SHA256 != sha256Of(body).Hex {
		t.Fatalf("sha256 = %s", res[0].SHA256)
	}

	t.Run("wrong digest", func(t *testing.T) {
		f, _ := newTestFetcher(t)
		_, err := f.Fetch(context.Background(), []Request{{URL: "file://" + src, Pinned: pin(sha256Of(body))}})
		if !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("err = %v", err)
		}
		assertNothingKept(t, f.CacheDir)
	})
	t.Run("size cap", func(t *testing.T) {
		f, _ := newTestFetcher(t)
		_, err := f.Fetch(context.Background(), []Request{{URL: "file://" + src, Pinned: pin(sha256Of([]byte("changed"))), MaxSize: 3}})
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("err = %v", err)
		}
		assertNothingKept(t, f.CacheDir)
	})
}

func TestFetchParallelOverlaps(t *testing.T) {
	// Distinct bodies, so no request becomes a cache hit of another.
	bodies := make(map[string][]byte)
	var reqs []Request
	for i := range 10 {
		b := append(payload(1000), byte(i))
		path := fmt.Sprintf("/f%d", i)
		bodies[path] = b
		reqs = append(reqs, Request{Pinned: pin(sha256Of(b))})
	}
	var inflight, peak atomic.Int32
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		// Hold the request until another one is in flight (at most 2s).
		deadline := time.Now().Add(2 * time.Second)
		for inflight.Load() < 2 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond)
		w.Write(bodies[r.URL.Path])
	}))
	for i := range reqs {
		reqs[i].URL = fmt.Sprintf("%s/f%d", srv.URL, i)
	}
	f, _ := newTestFetcher(t)
	f.Parallel = 4
	res, err := f.Fetch(context.Background(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 10 {
		t.Fatalf("%d results", len(res))
	}
	if p := peak.Load(); p < 2 || p > 4 {
		t.Fatalf("peak concurrent requests = %d, want 2..4 with Parallel 4", p)
	}
	t.Logf("peak concurrent requests: %d", peak.Load())
}

func TestFetchCollectsAllErrors(t *testing.T) {
	good := payload(100)
	srv, _ := newServer(t, filesHandler(map[string][]byte{"/good": good, "/bad": []byte("tampered")}))
	f, _ := newTestFetcher(t)
	res, err := f.Fetch(context.Background(), []Request{
		{URL: srv.URL + "/bad", Pinned: pin(sha256Of([]byte("original")))},
		{URL: srv.URL + "/good", Pinned: pin(sha256Of(good))},
		// Not good's digest: once /good is cached, a request pinned to
		// its digest is a cache hit whatever its URL.
		{URL: srv.URL + "/missing", Pinned: pin(sha256Of([]byte("never served")))},
	})
	if err == nil || !strings.Contains(err.Error(), "/bad") || !strings.Contains(err.Error(), "/missing") {
		t.Fatalf("err = %v, want both failures", err)
	}
	if res[1].Path == "" || res[0].Path != "" || res[2].Path != "" {
		t.Fatalf("results = %+v", res)
	}
}

func TestFetchCleansStaleStaging(t *testing.T) {
	cache := t.TempDir()
	if err := cacheDirs(cache); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(cache, tmpDir, "dl-999999999-123") // no such pid
	junk := filepath.Join(cache, tmpDir, "leftover")
	mine := filepath.Join(cache, tmpDir, fmt.Sprintf("dl-%d-456", os.Getpid())) // a live process
	for _, p := range []string{stale, junk, mine} {
		os.WriteFile(p, []byte("partial"), 0o600)
	}
	f := &Fetcher{CacheDir: cache, Proxy: noProxy}
	if _, err := f.Fetch(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	got := dirEntries(t, filepath.Join(cache, tmpDir))
	if len(got) != 1 || got[0] != filepath.Base(mine) {
		t.Fatalf("tmp/ = %v, want only the live process's file", got)
	}
}

func TestResolveDoesNotDownloadArtifact(t *testing.T) {
	a := payload(4096)
	sums := []byte(sha256Of(a).Hex + "  cni-plugins-linux-amd64-v1.5.1.tgz\n")
	srv, hits := newServer(t, filesHandler(map[string][]byte{
		"/cni-plugins-linux-amd64-v1.5.1.tgz":        a,
		"/cni-plugins-linux-amd64-v1.5.1.tgz.sha256": sums,
	}))
	f, _ := newTestFetcher(t)
	u := srv.URL + "/cni-plugins-linux-amd64-v1.5.1.tgz"
	res, err := f.Resolve(context.Background(), Request{URL: u, Checksum: &ChecksumSource{URL: u + ".sha256"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != sha256Of(a) || res.Trust != TrustSameOrigin {
		t.Fatalf("resolution = %+v", res)
	}
	if hits.count("/cni-plugins-linux-amd64-v1.5.1.tgz") != 0 {
		t.Fatal("Resolve downloaded the artifact")
	}
	pinned := sha512Of(a)
	if res, err := f.Resolve(context.Background(), Request{URL: u, Pinned: &pinned}); err != nil || res.Digest != pinned || res.Trust != TrustPinned {
		t.Fatalf("pinned resolution = %+v, %v", res, err)
	}
}

// The checksum file is fetched once per call even when many requests use it.
func TestFetchSharesChecksumFile(t *testing.T) {
	amd, arm := payload(100), payload(200)
	sums := fmt.Sprintf("%s  runc.amd64\n%s  runc.arm64\n", sha256Of(amd).Hex, sha256Of(arm).Hex)
	srv, hits := newServer(t, filesHandler(map[string][]byte{"/runc.amd64": amd, "/runc.arm64": arm, "/runc.sha256sum": []byte(sums)}))
	f, _ := newTestFetcher(t)
	cs := &ChecksumSource{URL: srv.URL + "/runc.sha256sum"}
	res, err := f.Fetch(context.Background(), []Request{{URL: srv.URL + "/runc.amd64", Checksum: cs}, {URL: srv.URL + "/runc.arm64", Checksum: cs}})
	if err != nil {
		t.Fatal(err)
	}
	if hits.count("/runc.sha256sum") != 1 {
		t.Fatalf("checksum file fetched %d times", hits.count("/runc.sha256sum"))
	}
	if res[0].Digest != sha256Of(amd) || res[1].Digest != sha256Of(arm) || res[0].Trust != TrustSameOrigin {
		t.Fatalf("results %+v", res)
	}
}

func TestFetchContextCanceled(t *testing.T) {
	var once sync.Once
	started := make(chan struct{})
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		w.Write(make([]byte, 10))
		w.(http.Flusher).Flush()
		once.Do(func() { close(started) })
		<-r.Context().Done()
	}))
	f, waits := newTestFetcher(t)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	_, err := f.Fetch(ctx, []Request{{URL: srv.URL + "/x", Pinned: pin(sha256Of(nil))}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if len(waits.all()) != 0 {
		t.Fatal("retried after cancellation")
	}
	assertNothingKept(t, f.CacheDir)
}
