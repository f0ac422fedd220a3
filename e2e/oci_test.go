package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	art "github.com/nodeprov/nodeprov/e2e/artifacts"
	"github.com/nodeprov/nodeprov/fetch"
)

// hostRegistry runs Debian's docker-registry on a free loopback port of
// the host's network namespace until the test ends; it returns host:port
// and the registry's directory (registry.log is its log).
func hostRegistry(t *testing.T) (addr, dir string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = l.Addr().String()
	l.Close()
	dir = registryDir(t)
	launchRegistry(t, dir, addr, nil)
	return addr, dir
}

// tamperingProxy serves the registry at target on a loopback port, with
// the bodies of the responses whose path contains part changed by tamper.
func tamperingProxy(t *testing.T, target, part string, tamper func([]byte) []byte) string {
	t.Helper()
	u, _ := url.Parse("http://" + target)
	p := httputil.NewSingleHostReverseProxy(u)
	p.ModifyResponse = func(resp *http.Response) error {
		if !strings.Contains(resp.Request.URL.Path, part) || resp.StatusCode != http.StatusOK {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		body = tamper(body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: p}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// TestOCISource: an artifact in a real registry (Debian's docker-registry)
// as an oci:// download. It installs and verifies, by tag and by manifest
// digest; a layer whose bytes are not the ones its manifest names, and a
// manifest that is not the one the URL names, are refused with both
// digests, and nothing is installed.
func TestOCISource(t *testing.T) {
	a := releaseArtifacts(t)
	addr, _ := hostRegistry(t)
	src := filepath.Join(a.dir, art.RuncPath)
	sum, err := art.FileHash(src, sha256.New)
	if err != nil {
		t.Fatal(err)
	}
	f := &fetch.Fetcher{CacheDir: t.TempDir()}
	ref, err := fetch.ParseOCI("oci://" + addr + "/e2e/runc:" + art.RuncVersion)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := f.PushFile(context.Background(), ref, src, "runc.amd64", map[string]string{fetch.UpstreamURLAnnotation: art.UpstreamURL(art.RuncPath)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pushed %s as %s (manifest %s)", art.RuncPath, ref, desc.Digest)

	spec := func(u string) string {
		return fmt.Sprintf(`apiVersion: nodeprov/v1alpha1
kind: Node
downloads:
  - {url: %q, sha256: %s, path: /usr/local/sbin/runc-oci, mode: "0755"}
`, u, sum)
	}
	byTag := "oci://" + addr + "/e2e/runc:" + art.RuncVersion
	byDigest := byTag + "@" + desc.Digest.String()
	for _, u := range []string{byTag, byDigest} {
		root := sandbox(t)
		r := runNodeprov(t, "", "apply", "--root", root, "--stages", "fetch,install", writeSpec(t, spec(u)))
		if r.code != 0 {
			t.Fatalf("apply %s:\n%s", u, r)
		}
		if got, _ := art.FileHash(filepath.Join(root, "usr/local/sbin/runc-oci"), sha256.New); got != sum {
			t.Errorf("%s: installed runc-oci has sha256 %s, want %s", u, got, sum)
		}
		if r := runNodeprov(t, "", "check", "--root", root, "--stages", "fetch,install", writeSpec(t, spec(u))); r.code != 0 {
			t.Errorf("check after apply of %s:\n%s", u, r)
		}
	}

	// Every command that downloads takes the oci:// source the same way:
	// fetch --to fills a cache an apply then needs no registry for, lock
	// pins it, and --require-pinned admits it on the spec's pin.
	specFile := writeSpec(t, spec(byDigest))
	cache := t.TempDir()
	if r := runNodeprov(t, "", "fetch", "--to", cache, specFile); r.code != 0 || !strings.Contains(r.stdout, "sha256:"+sum) {
		t.Errorf("fetch --to of an oci:// download:\n%s", r)
	}
	if r := runNodeprov(t, "", "lock", "--arch", "amd64", specFile); r.code != 0 || !strings.Contains(readFile(t, filepath.Join(filepath.Dir(specFile), "nodeprov.lock")), sum) {
		t.Errorf("lock of an oci:// download:\n%s", r)
	}
	if r := runNodeprov(t, "", "apply", "--require-pinned", "--root", sandbox(t), "--stages", "fetch,install", "--cache", cache, specFile); r.code != 0 {
		t.Errorf("apply --require-pinned from the filled cache:\n%s", r)
	}

	flip := func(b []byte) []byte { c := append([]byte(nil), b...); c[len(c)/2] ^= 0xff; return c }
	badBlob := tamperingProxy(t, addr, "/blobs/sha256:"+sum, flip)
	badManifest := tamperingProxy(t, addr, "/manifests/", func(b []byte) []byte { return append(b, ' ') })
	wrongDigest := "sha256:" + strings.Repeat("0", 64)
	for _, tc := range []struct{ name, url, want string }{
		{"tampered layer", "oci://" + badBlob + "/e2e/runc:" + art.RuncVersion, "the manifest says sha256:" + sum + ", the bytes are sha256:"},
		{"tampered manifest", "oci://" + badManifest + "/e2e/runc:" + art.RuncVersion + "@" + desc.Digest.String(), desc.Digest.String()},
		{"another manifest", "oci://" + addr + "/e2e/runc:" + art.RuncVersion + "@" + wrongDigest, wrongDigest},
	} {
		root := sandbox(t)
		r := runNodeprov(t, "", "apply", "--root", root, "--stages", "fetch,install", writeSpec(t, spec(tc.url)))
		t.Logf("%s: exit %d: %s", tc.name, r.code, strings.TrimSpace(tail(r.stdout+r.stderr, 3)))
		if r.code == 0 || !strings.Contains(r.stdout+r.stderr, tc.want) {
			t.Errorf("%s: exit %d, want a failure naming %q:\n%s", tc.name, r.code, tc.want, r)
		}
		if _, err := os.Stat(filepath.Join(root, "usr/local/sbin/runc-oci")); !os.IsNotExist(err) {
			t.Errorf("%s: runc-oci was installed (%v)", tc.name, err)
		}
	}
}
