// Package artifacts builds release-shaped artifacts from this machine's
// Debian binaries and serves them from a loopback HTTP server, laid out
// under the upstream URL paths the component catalog (spec/catalog.go)
// expands to:
//
//	github/containerd/containerd/releases/download/v1.6.20/
//	    containerd-1.6.20-linux-amd64.tar.gz          bin/<binary> members
//	    containerd-1.6.20-linux-amd64.tar.gz.sha256sum
//	github/opencontainers/runc/releases/download/v1.1.5/
//	    runc.amd64, runc.amd64.asc                    detached OpenPGP signature
//	    runc.sha256sum                                clearsigned
//	github/containernetworking/plugins/releases/download/v1.1.1/
//	    cni-plugins-linux-amd64-v1.1.1.tgz            ./<plugin> members
//	    cni-plugins-linux-amd64-v1.1.1.tgz.sha256
//	gcs/gvisor/releases/release/20221219/x86_64/
//	    runsc, runsc.sha512
//
// A spec reaches them through mirrors (see Mirrors): https://github.com/ is
// served under /github/ and https://storage.googleapis.com/ under /gcs/.
// runc is signed with a key generated for each tree; its armored public key
// (Tree.Keyring) goes into the spec's keyrings.
//
// The end-to-end tests, the benchmark (e2e/bench) and `make demo` (through
// e2e/mirror) use the same trees; Options add what the benchmark needs
// (incompressible padding payloads) and Sources what the crash tests need
// (other bytes in the same layout).
package artifacts

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
)

// Versions of the Debian 12 packages the artifacts are built from. A spec
// asks for exactly these, so what gets installed is what runs.
const (
	ContainerdVersion = "1.6.20"
	RuncVersion       = "1.1.5"
	CNIVersion        = "1.1.1"
	GVisorVersion     = "20221219"
	// PayloadVersion is the release of the padding payloads (Options.Payloads).
	PayloadVersion = "1.0.0"
)

// ContainerdBinaries are the bin/ members of the containerd tarball: what
// Debian's containerd package ships. The upstream 1.6 tarball also has
// containerd-stress, so a spec lists these in components.containerd.binaries.
var ContainerdBinaries = []string{"containerd", "containerd-shim", "containerd-shim-runc-v1", "containerd-shim-runc-v2", "ctr"}

// CNIPlugins are the plugins of the CNI plugins 1.1.1 release, all of which
// Debian's package ships (in /usr/lib/cni).
var CNIPlugins = []string{"bandwidth", "bridge", "dhcp", "firewall", "host-device", "host-local", "ipvlan", "loopback",
	"macvlan", "portmap", "ptp", "sbr", "static", "tuning", "vlan", "vrf"}

// DebianPackages provide DebianSources.
var DebianPackages = []string{"containerd", "runc", "runsc", "containernetworking-plugins"}

// Names of the artifacts in Tree.Artifacts (padding payloads are
// "payload-<i>").
const (
	Containerd = "containerd"
	Runc       = "runc"
	CNI        = "cni"
	Runsc      = "gvisor/runsc"
)

// Upstream hosts and the directories of the tree that stand for them.
var upstreams = []struct{ prefix, dir string }{
	{"https://github.com/", "github/"},
	{"https://storage.googleapis.com/", "gcs/"},
}

// Mirror is one entry of a spec's mirrors: list.
type Mirror struct{ Prefix, To string }

// Mirrors returns the mirrors that point the upstream hosts at a server of
// the tree at serverURL (no trailing slash).
func Mirrors(serverURL string) []Mirror {
	serverURL = strings.TrimRight(serverURL, "/")
	out := make([]Mirror, len(upstreams))
	for i, u := range upstreams {
		out[i] = Mirror{Prefix: u.prefix, To: serverURL + "/" + u.dir}
	}
	return out
}

// MirrorsYAML is Mirrors as a spec's top-level mirrors: block.
func MirrorsYAML(serverURL string) string {
	var b strings.Builder
	b.WriteString("mirrors:\n")
	for _, m := range Mirrors(serverURL) {
		fmt.Fprintf(&b, "  - prefix: %s\n    to: %s\n", m.Prefix, m.To)
	}
	return b.String()
}

// Sources are the files a tree is built from.
type Sources struct {
	// ContainerdMembers maps bin/<name> members to source files.
	ContainerdMembers map[string]string
	// Runc and Runsc are the binaries.
	Runc, Runsc string
	// CNIMembers maps ./<plugin> members to source files.
	CNIMembers map[string]string
}

// DebianSources returns the Sources of this machine's Debian packages
// (DebianPackages): /usr/bin/{containerd,…}, /usr/bin/runc, /usr/bin/runsc
// and every plugin in /usr/lib/cni. A missing one is an error naming the
// packages to install.
func DebianSources() (*Sources, error) {
	s := &Sources{
		ContainerdMembers: map[string]string{},
		Runc:              "/usr/bin/runc",
		Runsc:             "/usr/bin/runsc",
		CNIMembers:        map[string]string{},
	}
	for _, b := range ContainerdBinaries {
		s.ContainerdMembers["bin/"+b] = "/usr/bin/" + b
	}
	entries, err := os.ReadDir("/usr/lib/cni")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, e := range entries {
		if st, err := os.Stat(filepath.Join("/usr/lib/cni", e.Name())); err == nil && st.Mode().IsRegular() {
			s.CNIMembers["./"+e.Name()] = "/usr/lib/cni/" + e.Name()
		}
	}
	var missing []string
	for _, f := range s.files() {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	if len(s.CNIMembers) == 0 {
		missing = append(missing, "/usr/lib/cni/*")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing %s: install the Debian packages %s (make test and make demo do, as root)",
			strings.Join(missing, ", "), strings.Join(DebianPackages, " "))
	}
	return s, nil
}

// RandomSources writes stand-ins for the Debian binaries into dir: the
// same names (ContainerdBinaries, runc, runsc, CNIPlugins), each of size
// seeded random bytes, for trees where only bytes matter (nothing in them
// is run). Different seeds give the same names with different bytes (an
// upgrade in place).
func RandomSources(dir string, seed uint64, size int64) (*Sources, error) {
	return RandomSourcesSized(dir, seed, func(string) int64 { return size })
}

// RandomSourcesSized is RandomSources with a size for each file, by its
// name in dir: a ContainerdBinaries entry, "runc", "runsc" or
// "cni-<plugin>".
func RandomSourcesSized(dir string, seed uint64, size func(name string) int64) (*Sources, error) {
	var err error
	seed *= 1 << 16
	file := func(name string) string {
		p := filepath.Join(dir, name)
		seed++
		if err == nil {
			err = WriteRandom(p, size(name), seed)
		}
		return p
	}
	s := &Sources{ContainerdMembers: map[string]string{}, CNIMembers: map[string]string{}}
	for _, b := range ContainerdBinaries {
		s.ContainerdMembers["bin/"+b] = file(b)
	}
	for _, p := range CNIPlugins {
		s.CNIMembers["./"+p] = file("cni-" + p)
	}
	s.Runc, s.Runsc = file("runc"), file("runsc")
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Sources) files() []string {
	out := []string{s.Runc, s.Runsc}
	for _, m := range []map[string]string{s.ContainerdMembers, s.CNIMembers} {
		for _, f := range m {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
}

// Options change how a tree is built; the zero value builds the four
// components from DebianSources with a fresh signing key.
type Options struct {
	// Sources replaces DebianSources.
	Sources *Sources
	// Signer signs runc; a new key is generated when nil.
	Signer *openpgp.Entity
	// Compression is the gzip level of the tarballs; 0 means
	// gzip.DefaultCompression (what the upstream releases use).
	Compression int
	// Payloads padding artifacts of seeded random (incompressible) bytes,
	// each with a .sha256, split evenly so that the whole tree holds about
	// TotalBytes. Nothing is added when the components alone reach it.
	Payloads   int
	TotalBytes int64
}

// Artifact is one file a client downloads and verifies.
type Artifact struct {
	// Name is Containerd, Runc, CNI, Runsc or payload-<i>.
	Name string
	// Path is the file's slash-separated path in the tree, which is also
	// its URL path on a Server.
	Path string
	// Upstream is the URL it stands for; a spec's mirrors map it to Path.
	Upstream string
	// Size and SHA256 (hex) of the file.
	Size   int64
	SHA256 string
	// Sidecars are the paths of its checksum and signature files.
	Sidecars []string
	// Members are the archive members of a tarball, sorted.
	Members []string
}

// Tree is a built artifact tree.
type Tree struct {
	// Dir is the directory the tree was built in.
	Dir string
	// Keyring is the armored public key runc is signed with.
	Keyring string
	// Signer is the signing key (with its private key).
	Signer *openpgp.Entity
	// Artifacts: the components in the order containerd, runc, cni,
	// gvisor/runsc, then any payloads.
	Artifacts []Artifact
}

// Artifact returns the named artifact.
func (t *Tree) Artifact(name string) (Artifact, bool) {
	for _, a := range t.Artifacts {
		if a.Name == name {
			return a, true
		}
	}
	return Artifact{}, false
}

// File returns the local path of a tree path (Artifact.Path or a sidecar).
func (t *Tree) File(rel string) string { return filepath.Join(t.Dir, filepath.FromSlash(rel)) }

// Total returns the bytes of all artifacts (without sidecars).
func (t *Tree) Total() (n int64) {
	for _, a := range t.Artifacts {
		n += a.Size
	}
	return n
}

// Largest returns the largest artifact.
func (t *Tree) Largest() Artifact {
	var l Artifact
	for _, a := range t.Artifacts {
		if a.Size > l.Size {
			l = a
		}
	}
	return l
}

// Upstream release paths of the components (tree paths; the upstream URL
// is the host prefix in place of the first element).
const (
	ContainerdPath = "github/containerd/containerd/releases/download/v" + ContainerdVersion + "/containerd-" + ContainerdVersion + "-linux-amd64.tar.gz"
	RuncDir        = "github/opencontainers/runc/releases/download/v" + RuncVersion
	RuncPath       = RuncDir + "/runc.amd64"
	CNIPath        = "github/containernetworking/plugins/releases/download/v" + CNIVersion + "/cni-plugins-linux-amd64-v" + CNIVersion + ".tgz"
	RunscPath      = "gcs/gvisor/releases/release/" + GVisorVersion + "/x86_64/runsc"
)

// PayloadPath is the tree path of padding payload i (1-based).
func PayloadPath(i int) string {
	return fmt.Sprintf("github/nodeprov-e2e/payload/releases/download/v%s/payload-%d-linux-amd64.bin", PayloadVersion, i)
}

// UpstreamURL returns the upstream URL a tree path stands for.
func UpstreamURL(rel string) string {
	for _, u := range upstreams {
		if strings.HasPrefix(rel, u.dir) {
			return u.prefix + strings.TrimPrefix(rel, u.dir)
		}
	}
	return ""
}

// Build writes a tree into dir (created if needed): the containerd tarball
// with its .sha256sum, runc.amd64 with a clearsigned runc.sha256sum and a
// detached runc.amd64.asc, the CNI tarball with its .sha256, runsc with its
// .sha512, and any padding payloads with their .sha256.
func Build(dir string, o Options) (*Tree, error) {
	src := o.Sources
	if src == nil {
		var err error
		if src, err = DebianSources(); err != nil {
			return nil, err
		}
	}
	level := o.Compression
	if level == 0 {
		level = gzip.DefaultCompression
	}
	if _, err := gzip.NewWriterLevel(nil, level); err != nil {
		return nil, err
	}
	signer := o.Signer
	if signer == nil {
		var err error
		if signer, err = openpgp.NewEntity("nodeprov e2e signer", "generated for one artifact tree", "signer@nodeprov.invalid", nil); err != nil {
			return nil, fmt.Errorf("generate signing key: %w", err)
		}
	}
	keyring, err := armoredPublicKey(signer)
	if err != nil {
		return nil, err
	}
	t := &Tree{Dir: dir, Keyring: keyring, Signer: signer}

	// The tarballs take most of the time (gzip): build them concurrently
	// with each other and with the rest.
	var wg sync.WaitGroup
	var ctrErr, cniErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		if ctrErr = writeTarGz(t.File(ContainerdPath), src.ContainerdMembers, level); ctrErr == nil {
			ctrErr = writeSumFile(t.File(ContainerdPath), ".sha256sum", sha256.New)
		}
	}()
	go func() {
		defer wg.Done()
		if cniErr = writeTarGz(t.File(CNIPath), src.CNIMembers, level); cniErr == nil {
			cniErr = writeSumFile(t.File(CNIPath), ".sha256", sha256.New)
		}
	}()
	err = t.buildRunc(src.Runc)
	if err == nil {
		if err = CopyFile(src.Runsc, t.File(RunscPath)); err == nil {
			err = writeSumFile(t.File(RunscPath), ".sha512", sha512.New)
		}
	}
	wg.Wait()
	switch {
	case err != nil:
		return nil, err
	case ctrErr != nil:
		return nil, fmt.Errorf("containerd tarball: %w", ctrErr)
	case cniErr != nil:
		return nil, fmt.Errorf("CNI tarball: %w", cniErr)
	}

	t.Artifacts = []Artifact{
		{Name: Containerd, Path: ContainerdPath, Sidecars: []string{ContainerdPath + ".sha256sum"}, Members: slices.Sorted(maps.Keys(src.ContainerdMembers))},
		{Name: Runc, Path: RuncPath, Sidecars: []string{RuncDir + "/runc.sha256sum", RuncPath + ".asc"}},
		{Name: CNI, Path: CNIPath, Sidecars: []string{CNIPath + ".sha256"}, Members: slices.Sorted(maps.Keys(src.CNIMembers))},
		{Name: Runsc, Path: RunscPath, Sidecars: []string{RunscPath + ".sha512"}},
	}
	for i := range t.Artifacts {
		if err := t.stat(&t.Artifacts[i]); err != nil {
			return nil, err
		}
	}

	if rest := o.TotalBytes - t.Total(); o.Payloads > 0 && rest > 0 {
		each := rest / int64(o.Payloads)
		for i := 1; i <= o.Payloads; i++ {
			rel := PayloadPath(i)
			if err := WriteRandom(t.File(rel), each, uint64(i)); err != nil {
				return nil, err
			}
			if err := writeSumFile(t.File(rel), ".sha256", sha256.New); err != nil {
				return nil, err
			}
			a := Artifact{Name: fmt.Sprintf("payload-%d", i), Path: rel, Sidecars: []string{rel + ".sha256"}}
			if err := t.stat(&a); err != nil {
				return nil, err
			}
			t.Artifacts = append(t.Artifacts, a)
		}
	}
	return t, nil
}

func (t *Tree) stat(a *Artifact) error {
	st, err := os.Stat(t.File(a.Path))
	if err != nil {
		return err
	}
	sum, err := FileHash(t.File(a.Path), sha256.New)
	if err != nil {
		return err
	}
	a.Size, a.SHA256, a.Upstream = st.Size(), sum, UpstreamURL(a.Path)
	return nil
}

// buildRunc writes runc.amd64, runc.sha256sum clearsigned by the tree's
// key, and the armored detached signature runc.amd64.asc. The checksum
// file has a line per architecture like upstream's; only amd64 is served,
// and the arm64 line's digest (all zeros) matches nothing.
func (t *Tree) buildRunc(src string) error {
	bin := t.File(RuncPath)
	if err := CopyFile(src, bin); err != nil {
		return err
	}
	sum, err := FileHash(bin, sha256.New)
	if err != nil {
		return err
	}
	var sums bytes.Buffer
	w, err := clearsign.Encode(&sums, t.Signer.PrivateKey, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s  %s\n%s  runc.arm64\n", sum, path.Base(RuncPath), strings.Repeat("0", 64))
	if err := w.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(t.File(RuncDir+"/runc.sha256sum"), sums.Bytes(), 0o644); err != nil {
		return err
	}
	f, err := os.Open(bin)
	if err != nil {
		return err
	}
	defer f.Close()
	var sig bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&sig, t.Signer, f, nil); err != nil {
		return err
	}
	return os.WriteFile(bin+".asc", sig.Bytes(), 0o644)
}

func armoredPublicKey(e *openpgp.Entity) (string, error) {
	var b bytes.Buffer
	w, err := armor.Encode(&b, openpgp.PublicKeyType, nil)
	if err != nil {
		return "", err
	}
	if err := e.Serialize(w); err != nil {
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	b.WriteByte('\n')
	return b.String(), nil
}

// ComponentsYAML is the part of a spec that installs a tree's components
// from a server of it at serverURL: the top-level mirrors and the runc
// keyring (keyring: the tree's armored key), then the components block
// with containerd (every binary), runc (signature checked), the CNI
// plugins and, with gvisor, runsc without the shim Debian does not ship.
// More components may follow at two spaces of indentation.
func ComponentsYAML(serverURL, keyring string, gvisor bool) string {
	s := fmt.Sprintf(`%skeyrings:
  runc:
    armored: |
      %s
components:
  containerd:
    version: %s
    binaries: [%s]
  runc: {version: %s, keyring: runc}
  cni: {version: %s}
`, MirrorsYAML(serverURL), strings.ReplaceAll(strings.TrimRight(keyring, "\n"), "\n", "\n      "),
		ContainerdVersion, strings.Join(ContainerdBinaries, ", "), RuncVersion, CNIVersion)
	if gvisor {
		s += fmt.Sprintf("  gvisor: {version: %q, shim: false}\n", GVisorVersion)
	}
	return s
}
