package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	art "github.com/nodeprov/nodeprov/e2e/artifacts"
)

// componentsSpec asks for the components the artifact tree serves, through
// mirrors pointing at the loopback server.
func componentsSpec(a *artifacts, serverURL, extra string) string {
	return "apiVersion: nodeprov/v1alpha1\nkind: Node\n" + releaseComponents(a, serverURL, true) + extra
}

// releaseComponents is the mirrors, the runc keyring and the components
// block of a spec that installs the release artifacts served at serverURL:
// containerd, runc (signature checked), all CNI plugins and, with gvisor,
// runsc without the containerd shim Debian does not ship.
func releaseComponents(a *artifacts, serverURL string, gvisor bool) string {
	return art.ComponentsYAML(serverURL, a.keyring, gvisor)
}

// countRequests wraps a handler and counts the requests it serves.
func countRequests(n *atomic.Int64) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			h.ServeHTTP(w, r)
		})
	}
}

func actionDetail(r report, resource string) (string, string) {
	for _, s := range r.Stages {
		for _, a := range s.Actions {
			if a.Resource == resource {
				return a.Status, a.Detail
			}
		}
	}
	return "", ""
}

// TestInstallRealBinariesFromLoopbackMirror: apply downloads release-shaped
// artifacts built from the distribution's binaries, verifies them (runc by
// its OpenPGP signature), installs them, and the installed binaries run.
// A re-apply touches neither the network nor the files.
func TestInstallRealBinariesFromLoopbackMirror(t *testing.T) {
	a := releaseArtifacts(t)
	var requests atomic.Int64
	srv := a.serve(t, countRequests(&requests))
	root := sandbox(t)
	spec := writeSpec(t, componentsSpec(a, srv.URL, ""))

	first := runNodeprov(t, "", "apply", "--root", root, "-o", "json", spec)
	rep := parseReport(t, first.stdout)
	if first.code != 0 || !rep.OK {
		t.Fatalf("apply:\n%s", first)
	}
	if st, detail := actionDetail(rep, "download runc"); st != "changed" || !strings.Contains(detail, "signed") {
		t.Errorf("runc download: %s %q, want changed and signed", st, detail)
	}
	if st, detail := actionDetail(rep, "download containerd"); st != "changed" || !strings.Contains(detail, "same-origin") {
		t.Errorf("containerd download: %s %q, want changed, same-origin", st, detail)
	}
	for bin, want := range map[string]string{
		"usr/local/bin/containerd": "containerd github.com/containerd/containerd " + containerdVersion,
		"usr/local/bin/ctr":        "ctr github.com/containerd/containerd " + containerdVersion,
		"usr/local/sbin/runc":      "runc version " + runcVersion,
		"usr/local/bin/runsc":      "runsc version 0.0~" + gvisorVersion,
	} {
		out, err := exec.Command(filepath.Join(root, bin), "--version").CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("%s --version: %v\n%s\nwant %q", bin, err, out, want)
		}
	}
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
		st, err := os.Stat(filepath.Join(root, "opt/cni/bin", p))
		if err != nil || st.Mode().Perm() != 0o755 {
			t.Errorf("CNI plugin %s: %v %v", p, st, err)
		}
	}

	before := requests.Load()
	second := runNodeprov(t, "", "apply", "--root", root, "-o", "json", spec)
	rep = parseReport(t, second.stdout)
	if second.code != 0 || rep.Changed != 0 {
		t.Fatalf("re-apply changed %d:\n%s", rep.Changed, second)
	}
	if n := requests.Load() - before; n != 0 {
		t.Errorf("re-apply made %d HTTP requests, want none", n)
	}
	if r := runNodeprov(t, "", "check", "--root", root, spec); r.code != 0 {
		t.Errorf("check after apply:\n%s", r)
	}

	// A tampered installed binary is drift, and apply puts the verified one back.
	target := filepath.Join(root, "usr/local/sbin/runc")
	if err := os.WriteFile(target, []byte("#!/bin/sh\necho evil\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if r := runNodeprov(t, "", "check", "--root", root, spec); r.code != 3 || !strings.Contains(r.stdout, "install runc") {
		t.Errorf("check after tampering: want exit 3 naming runc:\n%s", r)
	}
	if r := runNodeprov(t, "", "apply", "--root", root, spec); r.code != 0 {
		t.Fatalf("repair:\n%s", r)
	}
	if out, _ := exec.Command(target, "--version").CombinedOutput(); !strings.Contains(string(out), "runc version") {
		t.Errorf("runc not restored: %s", out)
	}
}

// TestWrongDigestInstallsNothing: a pinned digest that does not match
// fails with URL, expected and actual digest; the old binary stays, and no
// staging file is left in the cache.
func TestWrongDigestInstallsNothing(t *testing.T) {
	a := releaseArtifacts(t)
	srv := a.serve(t, nil)
	root := sandbox(t)
	old := filepath.Join(root, "usr/local/bin/tool")
	os.MkdirAll(filepath.Dir(old), 0o755)
	os.WriteFile(old, []byte("old tool\n"), 0o755)
	wrong := strings.Repeat("ab", 32)
	spec := writeSpec(t, fmt.Sprintf(`apiVersion: nodeprov/v1alpha1
kind: Node
downloads:
  - url: %s/gcs/gvisor/releases/release/%s/x86_64/runsc
    sha256: %s
    path: /usr/local/bin/tool
    mode: "0755"
`, srv.URL, gvisorVersion, wrong))
	r := runNodeprov(t, "", "apply", "--root", root, spec)
	if r.code != 1 || !strings.Contains(r.stdout, "digest mismatch: want sha256:"+wrong+" got sha256:") ||
		!strings.Contains(r.stdout, srv.URL+"/gcs/gvisor") {
		t.Fatalf("want a digest mismatch naming URL, expected and actual digest:\n%s", r)
	}
	if b, _ := os.ReadFile(old); string(b) != "old tool\n" {
		t.Errorf("old binary replaced: %q", b)
	}
	leftovers, _ := filepath.Glob(filepath.Join(root, "var/cache/nodeprov/tmp/*"))
	cached, _ := filepath.Glob(filepath.Join(root, "var/cache/nodeprov/sha256/*"))
	if len(leftovers)+len(cached) != 0 {
		t.Errorf("cache not clean after a mismatch: %v %v", leftovers, cached)
	}
}

// TestAirGappedCacheAndLock: `fetch --to DIR` fills a cache with its lock;
// with the server stopped, apply --cache DIR installs everything. `lock`
// pins every digest; apply then reports them as pinned.
func TestAirGappedCacheAndLock(t *testing.T) {
	a := releaseArtifacts(t)
	srv := a.serve(t, nil)
	specFile := writeSpec(t, componentsSpec(a, srv.URL, ""))
	cache := t.TempDir()
	if r := runNodeprov(t, "", "fetch", "--to", cache, specFile); r.code != 0 {
		t.Fatalf("fetch --to:\n%s", r)
	}
	if _, err := os.Stat(filepath.Join(cache, "nodeprov.lock")); err != nil {
		t.Fatalf("fetch --to wrote no lock: %v", err)
	}
	srv.Close()

	root := sandbox(t)
	r := runNodeprov(t, "", "apply", "--root", root, "--cache", cache, "-o", "json", specFile)
	if rep := parseReport(t, r.stdout); r.code != 0 || !rep.OK {
		t.Fatalf("air-gapped apply with the server stopped:\n%s", r)
	}
	if out, err := exec.Command(filepath.Join(root, "usr/local/bin/containerd"), "--version").CombinedOutput(); err != nil {
		t.Errorf("containerd from the air-gapped cache does not run: %v %s", err, out)
	}

	srv2 := a.serve(t, nil)
	specFile = writeSpec(t, componentsSpec(a, srv2.URL, ""))
	if r := runNodeprov(t, "", "lock", "--arch", "amd64", specFile); r.code != 0 {
		t.Fatalf("lock:\n%s", r)
	}
	lock, err := os.ReadFile(filepath.Join(filepath.Dir(specFile), "nodeprov.lock"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"https://github.com/opencontainers/runc/releases/download/v" + runcVersion + "/runc.amd64 sha256:",
		"https://github.com/containerd/containerd/releases/download/v" + containerdVersion + "/containerd-" + containerdVersion + "-linux-amd64.tar.gz sha256:",
	} {
		if !strings.Contains(string(lock), want) {
			t.Errorf("lock lacks %q:\n%s", want, lock)
		}
	}
	if !strings.Contains(string(lock), "runc.amd64 sha256:") || !strings.Contains(string(lock), " signed\n") {
		t.Errorf("runc pin is not marked signed:\n%s", lock)
	}
	// The lock records what only an unsigned checksum vouched for as
	// same-origin, which --require-pinned does not take as a pin ...
	root = sandbox(t)
	r = runNodeprov(t, "", "apply", "--root", root, "-o", "json", "--require-pinned", specFile)
	wantRefused(t, r, 1, "trust same-origin", "pinned digests are required")
	// ... until someone has checked those digests and says so in the lock.
	reviewed := strings.ReplaceAll(string(lock), " same-origin\n", " pinned\n")
	if err := os.WriteFile(filepath.Join(filepath.Dir(specFile), "nodeprov.lock"), []byte(reviewed), 0o644); err != nil {
		t.Fatal(err)
	}
	root = sandbox(t)
	r = runNodeprov(t, "", "apply", "--root", root, "-o", "json", "--require-pinned", specFile)
	rep := parseReport(t, r.stdout)
	if r.code != 0 {
		t.Fatalf("apply with the reviewed lock and --require-pinned:\n%s", r)
	}
	if _, detail := actionDetail(rep, "download cni"); !strings.Contains(detail, "pinned") {
		t.Errorf("cni not verified against the lock: %q", detail)
	}
}
