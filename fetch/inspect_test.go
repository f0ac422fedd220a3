package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
)

// Request.Inspect reads the bytes of the attempt that succeeded, all of
// them; an inspector that gives up early neither blocks nor fails the
// download; a cached artifact is not inspected.
func TestInspect(t *testing.T) {
	body := payload(300_000)
	var n atomic.Int32
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/reset" && n.Add(1) == 1 {
			// First attempt: a third of the body, then the connection drops.
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(http.StatusOK)
			w.Write(body[:len(body)/3])
			w.(http.Flusher).Flush()
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		w.Write(body)
	}))
	hashOf := func(calls *atomic.Int32, sum *string) func(io.Reader) error {
		return func(r io.Reader) error {
			calls.Add(1)
			h := sha256.New()
			_, err := io.Copy(h, r)
			*sum = hex.EncodeToString(h.Sum(nil))
			return err
		}
	}
	want := sha256Of(body).Hex

	for _, path := range []string{"/ok", "/reset"} {
		t.Run(path, func(t *testing.T) {
			f, _ := newTestFetcher(t)
			var calls atomic.Int32
			var sum string
			res, err := f.Fetch(context.Background(), []Request{{URL: srv.URL + path, Pinned: pin(sha256Of(body)), Inspect: hashOf(&calls, &sum)}})
			if err != nil {
				t.Fatal(err)
			}
			if !res[0].Inspected || res[0].InspectErr != nil || sum != want {
				t.Errorf("inspected %v, err %v, sha256 %s; want the artifact's %s", res[0].Inspected, res[0].InspectErr, sum, want)
			}
			if wantCalls := map[string]int32{"/ok": 1, "/reset": 2}[path]; calls.Load() != wantCalls {
				t.Errorf("Inspect called %d times, want once per attempt (%d)", calls.Load(), wantCalls)
			}
			// Cached now: fetched again, it is not inspected.
			res, err = f.Fetch(context.Background(), []Request{{URL: srv.URL + path, Pinned: pin(sha256Of(body)), Inspect: hashOf(&calls, &sum)}})
			if err != nil || !res[0].FromCache || res[0].Inspected {
				t.Errorf("cached fetch: %+v %v, want from cache and not inspected", res[0], err)
			}
		})
	}

	t.Run("inspector gives up early", func(t *testing.T) {
		f, _ := newTestFetcher(t)
		refused := errors.New("not an archive")
		res, err := f.Fetch(context.Background(), []Request{{URL: srv.URL + "/ok", Pinned: pin(sha256Of(body)),
			Inspect: func(r io.Reader) error { return refused }}})
		if err != nil {
			t.Fatal(err)
		}
		if !res[0].Inspected || !errors.Is(res[0].InspectErr, refused) || res[0].Bytes != int64(len(body)) {
			t.Errorf("result %+v, want the whole download and the inspector's error", res[0])
		}
	})
}
