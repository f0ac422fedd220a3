package main

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
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
)

// Versions of the Debian packages the release-shaped artifacts are built
// from (the same ones the e2e tests use).
const (
	containerdVersion = "1.6.20"
	runcVersion       = "1.1.5"
	cniVersion        = "1.1.1"
	gvisorVersion     = "20221219"
	payloadVersion    = "1.0.0"
)

var containerdBinaries = []string{"containerd", "containerd-shim", "containerd-shim-runc-v1", "containerd-shim-runc-v2", "ctr"}

// debianBinaries must exist for the tree to be built; make bench-e2e
// installs the packages that provide them.
var debianBinaries = []string{"/usr/bin/containerd", "/usr/bin/runc", "/usr/bin/runsc", "/usr/lib/cni/bridge"}

// artifact is one file a client downloads and verifies (checksum and
// signature files are not counted as artifacts; they are listed in sidecars).
type artifact struct {
	name     string   // short name for the size table
	rel      string   // path under the tree (URL path on the server)
	size     int64    // bytes
	sidecars []string // checksum/signature files next to it (rel paths)
}

// tree is a release-shaped directory served over loopback.
type tree struct {
	dir       string
	keyring   string // armored public key of the generated signing key
	artifacts []artifact
	payloads  []string // rel paths of the padding artifacts
}

func (t *tree) total() (n int64) {
	for _, a := range t.artifacts {
		n += a.size
	}
	return n
}

func (t *tree) largest() artifact {
	var l artifact
	for _, a := range t.artifacts {
		if a.size > l.size {
			l = a
		}
	}
	return l
}

func containerdRel() string {
	return "github/containerd/containerd/releases/download/v" + containerdVersion + "/containerd-" + containerdVersion + "-linux-amd64.tar.gz"
}
func runcDirRel() string { return "github/opencontainers/runc/releases/download/v" + runcVersion }
func cniRel() string {
	return "github/containernetworking/plugins/releases/download/v" + cniVersion + "/cni-plugins-linux-amd64-v" + cniVersion + ".tgz"
}
func runscRel() string { return "gcs/gvisor/releases/release/" + gvisorVersion + "/x86_64/runsc" }
func payloadRel(i int) string {
	return fmt.Sprintf("github/nodeprov-bench/payload/releases/download/v%s/payload-%d-linux-amd64.bin", payloadVersion, i)
}

// buildTree writes the release-shaped tree into dir: the containerd tarball
// with bin/*, runc.amd64 with a clearsigned runc.sha256sum and a detached
// .asc (a key generated here), the CNI .tgz with .sha256, gVisor's runsc
// with .sha512, and padding payloads of random (incompressible) bytes with
// .sha256 files, sized so the whole tree is about totalBytes.
func buildTree(dir string, totalBytes int64, payloads int) (*tree, error) {
	for _, b := range debianBinaries {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("%s missing (make bench-e2e installs containerd, runc, runsc, containernetworking-plugins): %w", b, err)
		}
	}
	t := &tree{dir: dir}
	abs := func(rel string) string { return filepath.Join(dir, filepath.FromSlash(rel)) }

	// The two tarballs take most of the build time (gzip): build them
	// concurrently with the rest.
	var wg sync.WaitGroup
	var ctrErr, cniErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		members := map[string]string{}
		for _, b := range containerdBinaries {
			members["bin/"+b] = "/usr/bin/" + b
		}
		if ctrErr = writeTarGz(abs(containerdRel()), members); ctrErr == nil {
			ctrErr = writeSumFile(abs(containerdRel()), ".sha256sum", sha256.New)
		}
	}()
	go func() {
		defer wg.Done()
		plugins := map[string]string{}
		entries, err := os.ReadDir("/usr/lib/cni")
		if err != nil {
			cniErr = err
			return
		}
		for _, e := range entries {
			if e.Type().IsRegular() {
				plugins["./"+e.Name()] = "/usr/lib/cni/" + e.Name()
			}
		}
		if cniErr = writeTarGz(abs(cniRel()), plugins); cniErr == nil {
			cniErr = writeSumFile(abs(cniRel()), ".sha256", sha256.New)
		}
	}()

	// runc: binary, clearsigned checksum list, detached signature.
	key, err := openpgp.NewEntity("nodeprov bench signer", "bench", "signer@example.invalid", nil)
	if err != nil {
		return nil, err
	}
	runcBin := abs(runcDirRel() + "/runc.amd64")
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
	if err := os.WriteFile(abs(runcDirRel()+"/runc.sha256sum"), clear.Bytes(), 0o644); err != nil {
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
	if err := aw.Close(); err != nil {
		return nil, err
	}
	t.keyring = pub.String()

	// gVisor: runsc and runsc.sha512.
	if err := copyFile("/usr/bin/runsc", abs(runscRel())); err != nil {
		return nil, err
	}
	if err := writeSumFile(abs(runscRel()), ".sha512", sha512.New); err != nil {
		return nil, err
	}

	wg.Wait()
	if ctrErr != nil {
		return nil, fmt.Errorf("containerd tarball: %w", ctrErr)
	}
	if cniErr != nil {
		return nil, fmt.Errorf("CNI tarball: %w", cniErr)
	}

	t.artifacts = []artifact{
		{name: "containerd tar.gz", rel: containerdRel(), sidecars: []string{containerdRel() + ".sha256sum"}},
		{name: "runc.amd64", rel: runcDirRel() + "/runc.amd64", sidecars: []string{runcDirRel() + "/runc.sha256sum", runcDirRel() + "/runc.amd64.asc"}},
		{name: "CNI plugins .tgz", rel: cniRel(), sidecars: []string{cniRel() + ".sha256"}},
		{name: "gVisor runsc", rel: runscRel(), sidecars: []string{runscRel() + ".sha512"}},
	}
	for i := range t.artifacts {
		st, err := os.Stat(abs(t.artifacts[i].rel))
		if err != nil {
			return nil, err
		}
		t.artifacts[i].size = st.Size()
	}

	// Padding: random bytes, split evenly, to bring the tree to totalBytes.
	if rest := totalBytes - t.total(); payloads > 0 && rest > 0 {
		each := rest / int64(payloads)
		for i := 1; i <= payloads; i++ {
			rel := payloadRel(i)
			if err := writeRandom(abs(rel), each, uint64(i)); err != nil {
				return nil, err
			}
			if err := writeSumFile(abs(rel), ".sha256", sha256.New); err != nil {
				return nil, err
			}
			t.payloads = append(t.payloads, rel)
			t.artifacts = append(t.artifacts, artifact{name: fmt.Sprintf("payload-%d (random)", i), rel: rel, size: each, sidecars: []string{rel + ".sha256"}})
		}
	}
	return t, nil
}

// writeRandom writes n bytes of seeded ChaCha8 output: incompressible, so
// neither side gains from compression, and reproducible.
func writeRandom(dst string, n int64, seed uint64) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	var s [32]byte
	s[0] = byte(seed)
	r := rand.NewChaCha8(s)
	if _, err := io.CopyN(f, r, n); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeTarGz writes a gzip'd tar of members (member name -> source file),
// with a directory entry before the first member of each directory, like
// the upstream release tarballs.
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
		if err := addMember(tw, name, members[name]); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}

func addMember(tw *tar.Writer, name, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: st.Size()}); err != nil {
		return err
	}
	_, err = io.Copy(tw, in)
	return err
}

// writeSumFile writes "<hex>  <name>\n" next to file, sha256sum/sha512sum style.
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
