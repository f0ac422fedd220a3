package artifacts

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"

	"github.com/nodeprov/nodeprov/spec"
)

// smallTotal is the size the two padding payloads bring the small tree to.
const smallTotal = 4 << 20

var (
	smallOnce sync.Once
	smallDir  string
	smallTree *Tree
	smallSrc  *Sources
	smallErr  error
)

// small builds one tree from RandomSources, with two padding payloads, per
// test process (TestMain removes it).
func small(t *testing.T) (*Tree, *Sources) {
	t.Helper()
	smallOnce.Do(func() {
		if smallDir, smallErr = os.MkdirTemp("", "artifacts-test-"); smallErr != nil {
			return
		}
		if smallSrc, smallErr = RandomSources(filepath.Join(smallDir, "src"), 1, 32<<10); smallErr != nil {
			return
		}
		smallTree, smallErr = Build(filepath.Join(smallDir, "tree"), Options{Sources: smallSrc, Payloads: 2, TotalBytes: smallTotal})
	})
	if smallErr != nil {
		t.Fatalf("build: %v", smallErr)
	}
	return smallTree, smallSrc
}

func TestMain(m *testing.M) {
	code := m.Run()
	if smallDir != "" {
		os.RemoveAll(smallDir)
	}
	os.Exit(code)
}

func keyring(t *testing.T, armored string) openpgp.EntityList {
	t.Helper()
	kr, err := openpgp.ReadArmoredKeyRing(strings.NewReader(armored))
	if err != nil {
		t.Fatalf("read keyring: %v", err)
	}
	return kr
}

func hashOf(t *testing.T, file string, h func() hash.Hash) string {
	t.Helper()
	sum, err := FileHash(file, h)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// tarMembers reads a tar.gz: regular members with their SHA-256 and
// mode, and the directory entries.
func tarMembers(t *testing.T, file string) (map[string]string, []string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	regular := map[string]string{}
	var dirs []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			dirs = append(dirs, h.Name)
		case tar.TypeReg:
			if h.Mode != 0o755 {
				t.Errorf("%s: member %s mode %o, want 755", filepath.Base(file), h.Name, h.Mode)
			}
			hh := sha256.New()
			if _, err := io.Copy(hh, tr); err != nil {
				t.Fatal(err)
			}
			regular[h.Name] = hex.EncodeToString(hh.Sum(nil))
		default:
			t.Errorf("%s: member %s has type %c", filepath.Base(file), h.Name, h.Typeflag)
		}
	}
	return regular, dirs
}

// TestLayout: every artifact is where the upstream URL puts it, its size
// and digest are right, and the tarballs hold exactly the sources as
// members of the upstream shape.
func TestLayout(t *testing.T) {
	tr, src := small(t)
	want := map[string]string{
		Containerd:  "https://github.com/containerd/containerd/releases/download/v1.6.20/containerd-1.6.20-linux-amd64.tar.gz",
		Runc:        "https://github.com/opencontainers/runc/releases/download/v1.1.5/runc.amd64",
		CNI:         "https://github.com/containernetworking/plugins/releases/download/v1.1.1/cni-plugins-linux-amd64-v1.1.1.tgz",
		Runsc:       "https://storage.googleapis.com/gvisor/releases/release/20221219/x86_64/runsc",
		"payload-1": "https://github.com/nodeprov-e2e/payload/releases/download/v1.0.0/payload-1-linux-amd64.bin",
		"payload-2": "https://github.com/nodeprov-e2e/payload/releases/download/v1.0.0/payload-2-linux-amd64.bin",
	}
	if len(tr.Artifacts) != len(want) {
		t.Fatalf("%d artifacts, want %d: %+v", len(tr.Artifacts), len(want), tr.Artifacts)
	}
	for _, a := range tr.Artifacts {
		if a.Upstream != want[a.Name] {
			t.Errorf("%s: upstream %s, want %s", a.Name, a.Upstream, want[a.Name])
		}
		st, err := os.Stat(tr.File(a.Path))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != a.Size || hashOf(t, tr.File(a.Path), sha256.New) != a.SHA256 {
			t.Errorf("%s: size/digest %d %s do not match the file", a.Name, a.Size, a.SHA256)
		}
	}
	if r, _ := tr.Artifact(Runc); hashOf(t, tr.File(r.Path), sha256.New) != hashOf(t, src.Runc, sha256.New) {
		t.Error("runc.amd64 differs from its source")
	}
	if r, _ := tr.Artifact(Runsc); hashOf(t, tr.File(r.Path), sha256.New) != hashOf(t, src.Runsc, sha256.New) {
		t.Error("runsc differs from its source")
	}

	for _, c := range []struct {
		name    string
		sources map[string]string
		dirs    []string
	}{
		{Containerd, src.ContainerdMembers, []string{"bin/"}},
		{CNI, src.CNIMembers, nil},
	} {
		a, _ := tr.Artifact(c.name)
		members, dirs := tarMembers(t, tr.File(a.Path))
		if fmt.Sprint(dirs) != fmt.Sprint(c.dirs) {
			t.Errorf("%s: directory entries %q, want %q", c.name, dirs, c.dirs)
		}
		if len(members) != len(c.sources) || fmt.Sprint(a.Members) != fmt.Sprint(slices.Sorted(maps.Keys(c.sources))) {
			t.Errorf("%s: members %v (listed %v), want %v", c.name, members, a.Members, slices.Sorted(maps.Keys(c.sources)))
		}
		for m, srcFile := range c.sources {
			if members[m] != hashOf(t, srcFile, sha256.New) {
				t.Errorf("%s: member %s missing or not the source's bytes", c.name, m)
			}
		}
	}

	// Padding: two payloads bring the tree to about TotalBytes.
	if total := tr.Total(); total < smallTotal-2 || total > smallTotal {
		t.Errorf("total %d bytes, want about %d", total, smallTotal)
	}
	if l := tr.Largest(); !strings.HasPrefix(l.Name, "payload-") {
		t.Errorf("largest artifact %s, want a payload", l.Name)
	}
}

// TestChecksumFilesVerify: every .sha256sum/.sha256/.sha512 holds the
// digest of its artifact under the artifact's name, and runc.sha256sum
// (once its clearsignature is checked) holds runc.amd64's.
func TestChecksumFilesVerify(t *testing.T) {
	tr, _ := small(t)
	algs := map[string]func() hash.Hash{".sha256sum": sha256.New, ".sha256": sha256.New, ".sha512": sha512.New}
	n := 0
	for _, a := range tr.Artifacts {
		for _, sc := range a.Sidecars {
			alg, ok := algs[path.Ext(sc)]
			if !ok || a.Name == Runc {
				continue
			}
			data, err := os.ReadFile(tr.File(sc))
			if err != nil {
				t.Fatal(err)
			}
			want := hashOf(t, tr.File(a.Path), alg) + "  " + path.Base(a.Path) + "\n"
			if string(data) != want {
				t.Errorf("%s: %q, want %q", sc, data, want)
			}
			n++
		}
	}
	if n != 5 { // containerd, cni, runsc, two payloads
		t.Errorf("checked %d checksum files, want 5", n)
	}

	signed, err := os.ReadFile(tr.File(RuncDir + "/runc.sha256sum"))
	if err != nil {
		t.Fatal(err)
	}
	b, rest := clearsign.Decode(signed)
	if b == nil || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("runc.sha256sum is not one clearsigned message:\n%s", signed)
	}
	if _, err := b.VerifySignature(keyring(t, tr.Keyring), nil); err != nil {
		t.Errorf("runc.sha256sum clearsignature: %v", err)
	}
	line := hashOf(t, tr.File(RuncPath), sha256.New) + "  runc.amd64"
	if !strings.Contains(string(b.Plaintext), line+"\n") {
		t.Errorf("runc.sha256sum lacks %q:\n%s", line, b.Plaintext)
	}
}

// TestRuncSignatures: the detached signature verifies with the tree's
// keyring, and not over other bytes or with another key.
func TestRuncSignatures(t *testing.T) {
	tr, _ := small(t)
	bin, err := os.ReadFile(tr.File(RuncPath))
	if err != nil {
		t.Fatal(err)
	}
	asc, err := os.ReadFile(tr.File(RuncPath + ".asc"))
	if err != nil {
		t.Fatal(err)
	}
	kr := keyring(t, tr.Keyring)
	if len(kr) != 1 || kr[0].PrimaryKey.KeyId != tr.Signer.PrimaryKey.KeyId {
		t.Fatalf("keyring holds %d keys, want the signer's", len(kr))
	}
	if kr[0].PrivateKey != nil {
		t.Error("the armored keyring holds a private key")
	}
	check := func(data []byte, kr openpgp.EntityList) error {
		_, err := openpgp.CheckArmoredDetachedSignature(kr, bytes.NewReader(data), bytes.NewReader(asc), nil)
		return err
	}
	if err := check(bin, kr); err != nil {
		t.Errorf("runc.amd64.asc: %v", err)
	}
	tampered := bytes.Clone(bin)
	tampered[len(tampered)/2] ^= 1
	if check(tampered, kr) == nil {
		t.Error("the signature verifies over tampered bytes")
	}
	other, err := openpgp.NewEntity("other", "", "other@nodeprov.invalid", nil)
	if err != nil {
		t.Fatal(err)
	}
	if check(bin, openpgp.EntityList{other}) == nil {
		t.Error("the signature verifies with another key")
	}
}

// TestSignerOption: a given key signs, and two trees built with it share
// one keyring; another seed of RandomSources gives other bytes at the same
// paths.
func TestSignerOption(t *testing.T) {
	tr, _ := small(t)
	src2, err := RandomSources(t.TempDir(), 2, 32<<10)
	if err != nil {
		t.Fatal(err)
	}
	t2, err := Build(t.TempDir(), Options{Sources: src2, Signer: tr.Signer, Compression: gzip.BestSpeed})
	if err != nil {
		t.Fatal(err)
	}
	r1, _ := tr.Artifact(Runc)
	r2, _ := t2.Artifact(Runc)
	if r1.SHA256 == r2.SHA256 || r1.Path != r2.Path {
		t.Errorf("another seed: runc %s at %s, first tree %s at %s", r2.SHA256, r2.Path, r1.SHA256, r1.Path)
	}
	if t2.Keyring != tr.Keyring {
		t.Error("the same signer gave another keyring")
	}
	asc, _ := os.ReadFile(t2.File(RuncPath + ".asc"))
	bin, _ := os.ReadFile(t2.File(RuncPath))
	if _, err := openpgp.CheckArmoredDetachedSignature(keyring(t, tr.Keyring), bytes.NewReader(bin), bytes.NewReader(asc), nil); err != nil {
		t.Error(err)
	}
	if len(t2.Artifacts) != 4 {
		t.Errorf("%d artifacts without padding, want 4", len(t2.Artifacts))
	}
}

func TestBuildErrors(t *testing.T) {
	_, src := small(t)
	bad := *src
	bad.Runsc = filepath.Join(t.TempDir(), "no-such-runsc")
	if _, err := Build(t.TempDir(), Options{Sources: &bad}); err == nil || !strings.Contains(err.Error(), "no-such-runsc") {
		t.Errorf("missing source: %v", err)
	}
	if _, err := Build(t.TempDir(), Options{Sources: src, Compression: 42}); err == nil {
		t.Error("gzip level 42 accepted")
	}
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// TestCatalogURLsAreServed: a spec asking for the tree's versions, with
// Mirrors pointing at a Server, expands (spec/catalog.go) to URLs that the
// server answers with the tree's files: artifacts, checksum files,
// signatures; and the members the catalog installs are in the tarballs.
func TestCatalogURLsAreServed(t *testing.T) {
	tr, _ := small(t)
	srv, err := Serve(tr.Dir, ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	src := fmt.Sprintf(`apiVersion: nodeprov/v1alpha1
kind: Node
%skeyrings:
  runc:
    armored: |
%scomponents:
  containerd: {version: %s, binaries: [%s]}
  runc: {version: %s, keyring: runc}
  cni: {version: %s, plugins: [bridge, host-local, loopback, portmap]}
  gvisor: {version: "%s", shim: false}
`, MirrorsYAML(srv.URL), indent(tr.Keyring, "      "), ContainerdVersion, strings.Join(ContainerdBinaries, ", "), RuncVersion, CNIVersion, GVisorVersion)
	doc, err := spec.Load("test.yaml", []byte(src))
	if err != nil {
		t.Fatalf("spec: %v\n%s", err, src)
	}
	expanded, err := spec.Expand(doc.Spec, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if len(expanded) != 4 {
		t.Fatalf("%d artifacts expanded, want 4", len(expanded))
	}
	served := 0
	for _, e := range expanded {
		name := e.Name
		a, ok := tr.Artifact(name)
		if !ok {
			t.Errorf("expanded artifact %s is not in the tree", name)
			continue
		}
		if e.Upstream != a.Upstream || e.URL != srv.URL+"/"+a.Path {
			t.Errorf("%s: expands to %s (upstream %s), tree has %s (upstream %s)", name, e.URL, e.Upstream, srv.URL+"/"+a.Path, a.Upstream)
		}
		urls := []string{e.URL}
		if e.Checksum != nil {
			urls = append(urls, e.Checksum.URL)
		}
		if e.Signature != nil {
			urls = append(urls, e.Signature.URL)
		}
		for _, u := range urls {
			rel, ok := strings.CutPrefix(u, srv.URL+"/")
			if !ok {
				t.Errorf("%s: %s is not on the server", name, u)
				continue
			}
			want, err := os.ReadFile(tr.File(rel))
			if err != nil {
				t.Errorf("%s: %s has no file in the tree: %v", name, u, err)
				continue
			}
			if code, body := get(t, u); code != http.StatusOK || !bytes.Equal(body, want) {
				t.Errorf("GET %s: %d, %d bytes (want %d)", u, code, len(body), len(want))
			}
			served++
		}
		for m := range e.Install.Files {
			if i := sort.SearchStrings(a.Members, m); i == len(a.Members) || a.Members[i] != m {
				t.Errorf("%s: the catalog installs member %s, the tarball has %v", name, m, a.Members)
			}
		}
	}
	if served != 9 { // 4 artifacts, 4 checksum files, runc's .asc
		t.Errorf("%d URLs served, want 9", served)
	}
	if code, _ := get(t, srv.URL+"/github/no/such/file"); code != http.StatusNotFound {
		t.Errorf("missing file: %d, want 404", code)
	}
}

func indent(s, prefix string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(prefix + l)
	}
	return b.String() + "\n"
}

func TestServeLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0", "[::]:0", "example.com:0", "127.0.0.1"} {
		if s, err := Serve(t.TempDir(), ServerOptions{Addr: addr}); err == nil {
			s.Close()
			t.Errorf("Serve(%q) listened on %s", addr, s.URL)
		}
	}
	for _, addr := range []string{"", "localhost:0", "127.0.0.1:0", "127.0.0.2:0"} {
		s, err := Serve(t.TempDir(), ServerOptions{Addr: addr})
		if err != nil {
			t.Errorf("Serve(%q): %v", addr, err)
			continue
		}
		if !strings.HasPrefix(s.URL, "http://127.0.0.") {
			t.Errorf("Serve(%q) at %s", addr, s.URL)
		}
		s.Close()
	}
}

// TestServerStatsDirAndWrap: the counters count, SetDir switches trees,
// and Wrap sees every request.
func TestServerStatsDirAndWrap(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(a, "f"), []byte("tree a"), 0o644)
	os.WriteFile(filepath.Join(b, "f"), []byte("tree b!"), 0o644)
	var wrapped int
	s, err := Serve(a, ServerOptions{Wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			wrapped++
			h.ServeHTTP(w, r)
		})
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, body := get(t, s.URL+"/f"); string(body) != "tree a" {
		t.Errorf("got %q", body)
	}
	before := s.Stats()
	s.SetDir(b)
	if _, body := get(t, s.URL+"/f"); string(body) != "tree b!" {
		t.Errorf("after SetDir: got %q", body)
	}
	// The client can have the bytes before the server's Write returns
	// and counts them: wait for the count.
	minBytes := int64(2*len("HTTP/1.1 200 OK\r\n") + len("tree a") + len("tree b!"))
	for deadline := time.Now().Add(2 * time.Second); s.Stats().Bytes < minBytes && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	st := s.Stats()
	if d := st.Sub(before); d.Requests != 1 || st.Requests != 2 || st.Bytes < minBytes || st.Peak != 1 || st.Active != 0 || st.Conns < 1 {
		t.Errorf("stats %+v (delta %+v)", st, d)
	}
	if wrapped != 2 {
		t.Errorf("Wrap saw %d requests, want 2", wrapped)
	}
	if s.ResetPeak(); s.Stats().Peak != 0 {
		t.Errorf("peak %d after ResetPeak with nothing in flight, want 0", s.Stats().Peak)
	}
	get(t, s.URL+"/f")
	if p := s.Stats().Peak; p != 1 {
		t.Errorf("peak %d after one more request, want 1", p)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := http.Get(s.URL + "/f"); err == nil {
		t.Error("served after Close")
	}
}

// TestServerRate: a capped connection takes about size/rate; SetRate(0)
// lifts the cap.
func TestServerRate(t *testing.T) {
	dir := t.TempDir()
	const size, rate = 320 << 10, 512 << 10 // (size-burst)/rate ≈ 0.5 s
	if err := WriteRandom(filepath.Join(dir, "blob"), size, 7); err != nil {
		t.Fatal(err)
	}
	s, err := Serve(dir, ServerOptions{Rate: rate})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	if _, body := get(t, s.URL+"/blob"); len(body) != size {
		t.Fatalf("%d bytes", len(body))
	}
	if d, min := time.Since(start), time.Duration(float64(size-bucketBurst)/rate*float64(time.Second)); d < min*9/10 || d > 5*min {
		t.Errorf("capped download took %v, want about %v", d, min)
	}
	s.SetRate(0)
	start = time.Now()
	get(t, s.URL+"/blob")
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("uncapped download took %v", d)
	}
}

// TestServerPerRequestRate: with PerRequest each response body is paced
// with a budget of its own, a burst included, also on a connection that
// has just carried another (a per-connection cap would make the second
// download three times as long); bodies reach the client as they are
// paced; the counters still count; SetRate(0) lifts the cap.
func TestServerPerRequestRate(t *testing.T) {
	dir := t.TempDir()
	// (size-burst)/rate = 0.5 s per request; size/rate = 1.5 s.
	const size, rate = 96 << 10, 64 << 10
	if err := WriteRandom(filepath.Join(dir, "blob"), size, 9); err != nil {
		t.Fatal(err)
	}
	s, err := Serve(dir, ServerOptions{Rate: rate, PerRequest: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := time.Duration(float64(size-bucketBurst) / rate * float64(time.Second))
	for i := range 2 { // the second request reuses the connection
		start := time.Now()
		resp, err := http.Get(s.URL + "/blob")
		if err != nil {
			t.Fatal(err)
		}
		first := make([]byte, 1)
		if _, err := io.ReadFull(resp.Body, first); err != nil {
			t.Fatal(err)
		}
		firstByte := time.Since(start)
		rest, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || 1+len(rest) != size {
			t.Fatalf("request %d: %d bytes, %v", i, 1+len(rest), err)
		}
		if d := time.Since(start); d < want*9/10 || d > 2*want {
			t.Errorf("request %d: capped download took %v, want about %v", i, d, want)
		}
		if firstByte > want/4 {
			t.Errorf("request %d: first byte after %v of a %v download: the body is not flushed as it is paced", i, firstByte, want)
		}
	}
	// The last bytes can reach the client before the server counts them.
	for deadline := time.Now().Add(2 * time.Second); s.Stats().Bytes < 2*size && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if st := s.Stats(); st.Requests != 2 || st.Bytes < 2*size {
		t.Errorf("stats %+v, want 2 requests and at least %d bytes", st, 2*size)
	}
	s.SetRate(0)
	start := time.Now()
	if _, body := get(t, s.URL+"/blob"); len(body) != size {
		t.Fatalf("%d bytes", len(body))
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("uncapped download took %v", d)
	}
}

// TestRandomSourcesSized: each file gets its own size, under the names
// the size function is documented to see.
func TestRandomSourcesSized(t *testing.T) {
	sizes := map[string]int64{"containerd": 3000, "ctr": 2000, "runc": 1500, "runsc": 4000, "cni-bridge": 700}
	var asked []string
	src, err := RandomSourcesSized(t.TempDir(), 5, func(name string) int64 {
		asked = append(asked, name)
		if n, ok := sizes[name]; ok {
			return n
		}
		return 100
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := len(ContainerdBinaries) + len(CNIPlugins) + 2; len(asked) != want {
		t.Errorf("asked for %d sizes, want %d: %v", len(asked), want, asked)
	}
	for file, want := range map[string]int64{
		src.ContainerdMembers["bin/containerd"]:      3000,
		src.ContainerdMembers["bin/ctr"]:             2000,
		src.ContainerdMembers["bin/containerd-shim"]: 100,
		src.Runc:                     1500,
		src.Runsc:                    4000,
		src.CNIMembers["./bridge"]:   700,
		src.CNIMembers["./loopback"]: 100,
	} {
		if st, err := os.Stat(file); err != nil || st.Size() != want {
			t.Errorf("%s: %v, want %d bytes", file, err, want)
		}
	}
}

func TestLoopbackEnv(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
	t.Setenv("http_proxy", "http://proxy.invalid:3128")
	t.Setenv("ALL_PROXY", "socks5://proxy.invalid:1080")
	t.Setenv("NO_PROXY", "example.com")
	t.Setenv("NODEPROV_ARTIFACTS_TEST", "kept")
	env := strings.Join(LoopbackEnv(), "\n") + "\n"
	for _, gone := range []string{"proxy.invalid", "example.com"} {
		if strings.Contains(env, gone) {
			t.Errorf("the environment still has %s:\n%s", gone, env)
		}
	}
	for _, kept := range []string{"NODEPROV_ARTIFACTS_TEST=kept\n", "NO_PROXY=127.0.0.1,localhost\n", "no_proxy=127.0.0.1,localhost\n"} {
		if !strings.Contains(env, kept) {
			t.Errorf("the environment lacks %q", kept)
		}
	}
}

// TestDebianTree builds the real tree from this machine's Debian binaries
// (make test installs them) and runs what the tarballs carry: the
// versions the constants name are the versions that run.
func TestDebianTree(t *testing.T) {
	if _, err := DebianSources(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Debian binaries (make test installs them; CI must not skip this): %v", err)
		}
		t.Skipf("Debian binaries: %v", err)
	}
	tr, err := Build(t.TempDir(), Options{Compression: gzip.BestSpeed})
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	extract := func(tarball, member, to string) string {
		f, err := os.Open(tarball)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		r := tar.NewReader(zr)
		for {
			h, err := r.Next()
			if err != nil {
				t.Fatalf("%s: no member %s: %v", tarball, member, err)
			}
			if h.Name == member {
				out, err := os.OpenFile(filepath.Join(bin, to), os.O_CREATE|os.O_WRONLY, 0o755)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(out, r); err != nil {
					t.Fatal(err)
				}
				out.Close()
				return out.Name()
			}
		}
	}
	ctr, _ := tr.Artifact(Containerd)
	cni, _ := tr.Artifact(CNI)
	for _, c := range []struct {
		bin  string
		args []string
		want string
	}{
		{extract(tr.File(ctr.Path), "bin/containerd", "containerd"), []string{"--version"}, "containerd github.com/containerd/containerd " + ContainerdVersion},
		{extract(tr.File(ctr.Path), "bin/ctr", "ctr"), []string{"--version"}, "ctr github.com/containerd/containerd " + ContainerdVersion},
		{tr.File(RuncPath), []string{"--version"}, "runc version " + RuncVersion},
		{tr.File(RunscPath), []string{"--version"}, "runsc version 0.0~" + GVisorVersion},
		{extract(tr.File(cni.Path), "./bridge", "bridge"), nil, "CNI bridge plugin"},
	} {
		out, _ := exec.Command(c.bin, c.args...).CombinedOutput()
		if !strings.Contains(string(out), c.want) {
			t.Errorf("%s %v: %q, want %q", filepath.Base(c.bin), c.args, out, c.want)
		}
	}
	var want []string
	for _, p := range CNIPlugins {
		want = append(want, "./"+p)
	}
	if fmt.Sprint(cni.Members) != fmt.Sprint(want) {
		t.Errorf("CNI tarball has %v, want the release's plugins %v", cni.Members, want)
	}
}

// TestServerShutdown: Shutdown lets a request in flight finish; with a
// context that ends first, the request is cut and Shutdown says so.
func TestServerShutdown(t *testing.T) {
	dir := t.TempDir()
	const size, rate = 256 << 10, 512 << 10 // ≈ 0.4 s per download
	if err := WriteRandom(filepath.Join(dir, "blob"), size, 8); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		wait     time.Duration
		complete bool
	}{{5 * time.Second, true}, {50 * time.Millisecond, false}} {
		s, err := Serve(dir, ServerOptions{Rate: rate})
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan int, 1)
		go func() {
			n := 0
			if resp, err := http.Get(s.URL + "/blob"); err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				n = len(b)
			}
			got <- n
		}()
		for deadline := time.Now().Add(5 * time.Second); s.Stats().Active == 0 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.wait)
		err = s.Shutdown(ctx)
		cancel()
		n := <-got
		if c.complete && (err != nil || n != size) {
			t.Errorf("Shutdown(%v): %v, the request got %d of %d bytes", c.wait, err, n, size)
		}
		if !c.complete && (err == nil || n == size) {
			t.Errorf("Shutdown(%v): %v, the request got %d of %d bytes; want it cut", c.wait, err, n, size)
		}
	}
}
