package e2e

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	art "github.com/nodeprov/nodeprov/e2e/artifacts"
)

// tinyArtifacts is the release tree (every component, checksum file and
// runc signature the catalog expects) from 32 KiB random files: what a
// fleet of hundreds of roots can each install in CI.
func tinyArtifacts(t *testing.T) *artifacts {
	t.Helper()
	dir := t.TempDir()
	src, err := art.RandomSourcesSized(filepath.Join(dir, "src"), 7, func(string) int64 { return 32 << 10 })
	if err != nil {
		t.Fatal(err)
	}
	tree, err := art.Build(filepath.Join(dir, "tree"), art.Options{Sources: src})
	if err != nil {
		t.Fatal(err)
	}
	return newArtifacts(tree)
}

// countingProxy serves target on a loopback port and counts requests and
// response bytes, in total and per path.
type countingProxy struct {
	addr     string
	requests atomic.Int64
	bytes    atomic.Int64
	mu       sync.Mutex
	perPath  map[string]int
}

func newCountingProxy(t *testing.T, target string) *countingProxy {
	t.Helper()
	u, _ := url.Parse("http://" + target)
	rp := httputil.NewSingleHostReverseProxy(u)
	c := &countingProxy{perPath: map[string]int{}}
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.ContentLength > 0 {
			c.bytes.Add(resp.ContentLength)
		}
		return nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.addr = l.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.requests.Add(1)
		c.mu.Lock()
		c.perPath[r.Method+" "+r.URL.Path]++
		c.mu.Unlock()
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return c
}

// blobGETs returns the most times one blob was downloaded.
func (c *countingProxy) blobGETs() (most int, blobs int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, n := range c.perPath {
		if strings.HasPrefix(p, "GET ") && strings.Contains(p, "/blobs/") {
			blobs++
			most = max(most, n)
		}
	}
	return most, blobs
}

// fleetSize is how many roots TestFleetMirror applies: 200, or
// NODEPROV_FLEET_N (make fleet-sim N=1000).
func fleetSize(t *testing.T) int {
	if s := os.Getenv("NODEPROV_FLEET_N"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("NODEPROV_FLEET_N=%q: want a positive number", s)
		}
		return n
	}
	return 200
}

// TestFleetMirror is issue 16's fleet: `nodeprov mirror` copies every
// artifact of a spec, verified, into a real registry (Debian's
// docker-registry) and writes a spec and lock that use it; a second run
// copies nothing. Then the origin goes away, and a fleet of sandbox roots
// applies the mirrored spec concurrently: every root is installed and
// verified, the origin sees no request, and the registry serves each blob
// at most once per root. A directory mirror serves a root the same way.
// The table printed is the fleet's requests, bytes and time per root.
func TestFleetMirror(t *testing.T) {
	a := tinyArtifacts(t)
	origin := a.serve(t, nil)
	regAddr, _ := hostRegistry(t)
	reg := newCountingProxy(t, regAddr)
	specFile := writeSpec(t, "apiVersion: nodeprov/v1alpha1\nkind: Node\nmetadata: {name: fleet}\n"+art.ComponentsYAML(origin.URL, a.keyring, false))

	out := t.TempDir()
	mirror := func() map[string]any {
		t.Helper()
		r := runNodeprov(t, "", "mirror", "-o", "json", "--arch", "amd64", "--to", "oci://"+reg.addr+"/fleet", "--out", out, specFile)
		if r.code != 0 {
			t.Fatalf("mirror:\n%s", r)
		}
		var rep map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("mirror -o json: %v\n%s", err, r.stdout)
		}
		return rep
	}
	first := mirror()
	copied, _ := first["copied"].([]any)
	if len(copied) == 0 {
		t.Fatalf("mirror copied nothing: %v", first)
	}
	second := mirror()
	if again, _ := second["copied"].([]any); len(again) != 0 {
		t.Errorf("a second mirror copied %d files again: %v", len(again), again)
	}
	present, _ := second["present"].([]any)
	t.Logf("mirror: %d files copied (artifacts, checksum files, signatures), %d present on the second run", len(copied), len(present))
	mirrored := readFile(t, filepath.Join(out, "node.yaml"))
	if !strings.Contains(mirrored, "oci://"+reg.addr+"/fleet/github.com/") {
		t.Errorf("the mirrored spec does not send github.com to the mirror:\n%s", mirrored)
	}

	// The origin is gone: the fleet has the mirror only.
	before := origin.Stats()
	origin.Close()
	n := fleetSize(t)
	reg.requests.Store(0)
	reg.bytes.Store(0)
	reg.mu.Lock()
	reg.perPath = map[string]int{}
	reg.mu.Unlock()
	roots := make([]string, n)
	for i := range roots {
		roots[i] = sandbox(t)
	}
	walls := make([]time.Duration, n)
	fails := make([]string, n)
	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range roots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			t0 := time.Now()
			r := runNodeprov(t, "", "apply", "-o", "json", "--root", roots[i], "--stages", "fetch,install", filepath.Join(out, "node.yaml"))
			walls[i] = time.Since(t0)
			if r.code != 0 {
				fails[i] = r.String()
			}
		}()
	}
	wg.Wait()
	total := time.Since(start)
	for i, f := range fails {
		if f != "" {
			t.Fatalf("root %d of %d failed:\n%s", i, n, f)
		}
	}
	originReqs := origin.Stats().Requests - before.Requests
	if originReqs != 0 {
		t.Errorf("the origin saw %d requests during the fleet's applies", originReqs)
	}
	most, blobs := reg.blobGETs()
	if most > n {
		t.Errorf("a blob was downloaded %d times by %d roots", most, n)
	}
	for _, p := range []string{"usr/local/bin/containerd", "usr/local/sbin/runc", "opt/cni/bin/bridge"} {
		for _, i := range []int{0, n - 1} {
			if _, err := os.Stat(filepath.Join(roots[i], p)); err != nil {
				t.Errorf("root %d: %v", i, err)
			}
		}
	}
	slices.Sort(walls)
	reqs, bytes := reg.requests.Load(), reg.bytes.Load()
	t.Logf("fleet of %d roots (16 applying at a time) against the OCI mirror, origin closed:\n"+
		"  %-28s %d\n  %-28s %d (%.1f per root)\n  %-28s %.1f MiB (%.1f KiB per root)\n  %-28s %d blobs, each at most %d times (<= 1 per root)\n"+
		"  %-28s %s total; per root p50 %s, p90 %s, max %s",
		n, "origin requests", originReqs, "mirror requests", reqs, float64(reqs)/float64(n), "mirror bytes", float64(bytes)/(1<<20), float64(bytes)/1024/float64(n),
		"blob downloads", blobs, most, "wall", total.Round(time.Millisecond),
		walls[n/2].Round(time.Millisecond), walls[n*9/10].Round(time.Millisecond), walls[n-1].Round(time.Millisecond))

	// A directory mirror, served over HTTP, does the same for one root.
	dir, dirOut := t.TempDir(), t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir))}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	// Mirror from the registry's copy: the origin is closed, so the spec
	// mirrored to the registry is the source.
	if r := runNodeprov(t, "", "mirror", "--arch", "amd64", "--to", dir, "--url", "http://"+l.Addr().String(), "--out", dirOut, filepath.Join(out, "node.yaml")); r.code != 0 {
		t.Fatalf("mirror --to DIR:\n%s", r)
	}
	root := sandbox(t)
	if r := runNodeprov(t, "", "apply", "--root", root, "--stages", "fetch,install", filepath.Join(dirOut, "node.yaml")); r.code != 0 {
		t.Fatalf("apply from the directory mirror:\n%s", r)
	}
	if _, err := os.Stat(filepath.Join(dir, strings.TrimPrefix(art.UpstreamURL(art.RuncPath), "https://"))); err != nil {
		t.Errorf("the directory mirror has no runc under its upstream path: %v", err)
	}
}
