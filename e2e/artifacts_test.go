package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
)

// Versions of the Debian packages the artifacts are built from; the spec
// asks for exactly these, so what gets installed is what runs.
const (
	containerdVersion = "1.6.20"
	runcVersion       = "1.1.5"
	cniVersion        = "1.1.1"
	gvisorVersion     = "20221219"
)

// artifacts is a release-shaped tree built from the distribution's real
// binaries: a containerd tarball with bin/, runc.amd64 with a clearsigned
// runc.sha256sum and a detached .asc made with a test key, the CNI .tgz with
// .sha256, and gVisor's runsc with .sha512.
type artifacts struct {
	dir     string
	keyring string // armored public key of the test signing key
}

var (
	artifactsOnce sync.Once
	artifactsDir  *artifacts
	artifactsErr  error
)

// releaseArtifacts builds the tree once per test process.
func releaseArtifacts(t *testing.T) *artifacts {
	t.Helper()
	requireRoot(t)
	artifactsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nodeprov-artifacts-")
		if err != nil {
			artifactsErr = err
			return
		}
		artifactsDir, artifactsErr = buildArtifacts(dir)
	})
	if artifactsErr != nil {
		t.Fatalf("build release artifacts: %v", artifactsErr)
	}
	return artifactsDir
}

func buildArtifacts(dir string) (*artifacts, error) {
	for _, bin := range []string{"/usr/bin/containerd", "/usr/bin/runc", "/usr/bin/runsc", "/usr/lib/cni/bridge"} {
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("%s missing (make test installs containerd, runc, runsc, containernetworking-plugins): %w", bin, err)
		}
	}
	a := &artifacts{dir: dir}
	gh := filepath.Join(dir, "github")

	// containerd: bin/* members, like the upstream tarball.
	ctrDir := filepath.Join(gh, "containerd/containerd/releases/download/v"+containerdVersion)
	ctrName := "containerd-" + containerdVersion + "-linux-amd64.tar.gz"
	members := map[string]string{}
	for _, b := range []string{"containerd", "containerd-shim", "containerd-shim-runc-v1", "containerd-shim-runc-v2", "ctr"} {
		members["bin/"+b] = "/usr/bin/" + b
	}
	if err := writeTarGz(filepath.Join(ctrDir, ctrName), members); err != nil {
		return nil, err
	}
	if err := writeSumFile(filepath.Join(ctrDir, ctrName), ".sha256sum", sha256.New); err != nil {
		return nil, err
	}

	// runc: binary, clearsigned checksum list, detached signature.
	key, err := openpgp.NewEntity("nodeprov test signer", "e2e", "signer@example.invalid", nil)
	if err != nil {
		return nil, err
	}
	runcDir := filepath.Join(gh, "opencontainers/runc/releases/download/v"+runcVersion)
	runcBin := filepath.Join(runcDir, "runc.amd64")
	if err := copyFile("/usr/bin/runc", runcBin); err != nil {
		return nil, err
	}
	sum, err := fileHash(runcBin, sha256.New)
	if err != nil {
		return nil, err
	}
	var clear bytes.Buffer
	w, err := clearsign.Encode(&clear, key.PrivateKey, nil)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "%s  runc.amd64\n%s  runc.arm64\n", sum, strings.Repeat("0", 64))
	if err := w.Close(); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(runcDir, "runc.sha256sum"), clear.Bytes(), 0o644); err != nil {
		return nil, err
	}
	f, err := os.Open(runcBin)
	if err != nil {
		return nil, err
	}
	var sig bytes.Buffer
	err = openpgp.ArmoredDetachSign(&sig, key, f, nil)
	f.Close()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(runcBin+".asc", sig.Bytes(), 0o644); err != nil {
		return nil, err
	}
	var pub bytes.Buffer
	aw, err := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	if err != nil {
		return nil, err
	}
	if err := key.Serialize(aw); err != nil {
		return nil, err
	}
	aw.Close()
	a.keyring = pub.String()

	// CNI plugins: ./<plugin> members.
	cniDir := filepath.Join(gh, "containernetworking/plugins/releases/download/v"+cniVersion)
	cniName := "cni-plugins-linux-amd64-v" + cniVersion + ".tgz"
	plugins := map[string]string{}
	entries, err := os.ReadDir("/usr/lib/cni")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		plugins["./"+e.Name()] = "/usr/lib/cni/" + e.Name()
	}
	if err := writeTarGz(filepath.Join(cniDir, cniName), plugins); err != nil {
		return nil, err
	}
	if err := writeSumFile(filepath.Join(cniDir, cniName), ".sha256", sha256.New); err != nil {
		return nil, err
	}

	// gVisor: runsc and runsc.sha512 under the release date and uname -m.
	gv := filepath.Join(dir, "gcs/gvisor/releases/release", gvisorVersion, "x86_64", "runsc")
	if err := copyFile("/usr/bin/runsc", gv); err != nil {
		return nil, err
	}
	if err := writeSumFile(gv, ".sha512", sha512.New); err != nil {
		return nil, err
	}
	return a, nil
}

// serve starts a loopback HTTP server over the tree; the handler may wrap
// the file server (rate caps, faults).
func (a *artifacts) serve(t *testing.T, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	var h http.Handler = http.FileServer(http.Dir(a.dir))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// mirrors returns the spec's mirrors block pointing upstream prefixes at
// the loopback server.
func mirrors(serverURL string) string {
	return fmt.Sprintf(`mirrors:
  - prefix: https://github.com/
    to: %[1]s/github/
  - prefix: https://storage.googleapis.com/
    to: %[1]s/gcs/
`, serverURL)
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n") + "\n"
}

func writeTarGz(dst string, members map[string]string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	names := make([]string, 0, len(members))
	for n := range members {
		names = append(names, n)
	}
	sort.Strings(names)
	dirs := map[string]bool{}
	for _, name := range names {
		if d := filepath.Dir(strings.TrimPrefix(name, "./")); d != "." && !dirs[d] {
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
				return err
			}
		}
		src, err := os.Open(members[name])
		if err != nil {
			return err
		}
		st, _ := src.Stat()
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: st.Size()}); err != nil {
			src.Close()
			return err
		}
		_, err = io.Copy(tw, src)
		src.Close()
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

func writeSumFile(file, suffix string, h func() hash.Hash) error {
	sum, err := fileHash(file, h)
	if err != nil {
		return err
	}
	return os.WriteFile(file+suffix, []byte(sum+"  "+filepath.Base(file)+"\n"), 0o644)
}

func fileHash(file string, h func() hash.Hash) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	hh := h()
	if _, err := io.Copy(hh, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(hh.Sum(nil)), nil
}

func copyFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
