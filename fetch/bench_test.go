package fetch

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkFetch64MiB measures download + streaming hash + staging + commit
// of a 64 MiB body over loopback; go test prints MB/s from SetBytes.
func BenchmarkFetch64MiB(b *testing.B) {
	body := payload(64 << 20)
	d := sha256Of(body)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "a", fixedTime, bytesReadSeeker(body))
	}))
	defer srv.Close()
	f := &Fetcher{CacheDir: b.TempDir(), Proxy: noProxy}
	entry := filepath.Join(f.CacheDir, SHA256, d.Hex)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for b.Loop() {
		os.Remove(entry) // force a real download every iteration
		if _, err := f.Fetch(context.Background(), []Request{{URL: srv.URL + "/a", Pinned: &d}}); err != nil {
			b.Fatal(err)
		}
	}
}
