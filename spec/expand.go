package spec

import (
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"runtime"
	"strings"
)

// Artifact is one download after expansion: where from, how verified, where
// installed. Components expand into one or more artifacts (catalog.go); each
// entry of downloads: into exactly one.
type Artifact struct {
	// Name identifies the artifact in reports: "containerd", "runc", "cni",
	// "gvisor/runsc", "gvisor/containerd-shim-runsc-v1", "crictl", "docker",
	// "criDockerd", "kata", or "downloads[2]".
	Name string
	// SpecPath is the key path of the spec entry the artifact comes from,
	// for diagnostics: "components.runc", "downloads[2]".
	SpecPath string
	// URL is where the artifact is fetched from, after mirrors.
	URL string
	// Upstream is the URL before mirrors (after a component's baseURL). The
	// lock file keys on it, so changing a mirror does not invalidate pins.
	Upstream string
	// SHA256 and SHA512 are digests pinned in the spec; empty when not.
	SHA256, SHA512 string
	// Checksum names a checksum file holding the digest; nil when none.
	Checksum *ChecksumRef
	// Signature is a detached OpenPGP signature of the artifact; nil when
	// none.
	Signature *SignatureRef
	// MaxSize is the largest accepted download in bytes; 0 leaves the
	// fetcher's default.
	MaxSize int64
	// Install says where the verified bytes go.
	Install Install
}

// ChecksumRef is a checksum file and the entry to read from it.
type ChecksumRef struct {
	// URL of the checksum file, after mirrors.
	URL string
	// Algorithm is "sha256" or "sha512"; empty means taken from the file
	// name or the digest length.
	Algorithm string
	// Name is the file name to look up (sha256sum or BSD format); a file
	// holding a bare hash matches any name.
	Name string
	// Signature, when set, is the OpenPGP signature of the checksum file
	// itself: detached at URL, or the file is clearsigned when URL is "".
	Signature *SignatureRef
}

// SignatureRef is an OpenPGP signature and the keyring that must have made
// it.
type SignatureRef struct {
	// URL of a detached signature, after mirrors; "" for a clearsigned
	// checksum file.
	URL string
	// Keyring is the name of an entry in the spec's keyrings.
	Keyring string
}

// Install is where an artifact goes: a plain file (Path and Mode), named
// archive members (Files), or an archive tree (To, Include, Strip).
type Install struct {
	// Path and Mode install the artifact itself as one file.
	Path string
	Mode fs.FileMode
	// Files maps archive member names to absolute target paths.
	Files map[string]string
	// To installs the archive's members under this directory, after
	// removing Strip leading path components; with Include, only those
	// members (named after the strip).
	To      string
	Include []string
	Strip   int
	// Links maps absolute link paths to their absolute targets: symbolic
	// links made once the artifact's files are in place (a binary
	// installed under /opt linked into /usr/local/bin).
	Links map[string]string
}

// Archive reports whether the artifact is a tar.gz or tar.zst archive whose
// members are installed, rather than a file installed as is.
func (i Install) Archive() bool { return len(i.Files) > 0 || i.To != "" }

// Expand returns the artifacts of a loaded spec for one architecture
// ("amd64" or "arm64"): the components first, in the fixed order containerd,
// runc, cni, gvisor, crictl, kata, then the downloads in spec order. Mirrors are
// applied to every URL (artifact, checksum file, signatures); the longest
// matching prefix wins. Expand reads n and never changes it.
func Expand(n *Node, arch string) ([]Artifact, error) {
	if !knownArch(arch) {
		return nil, fmt.Errorf("unsupported architecture %q: expected one of %s", arch, strings.Join(Arches(), ", "))
	}
	out, err := componentArtifacts(&n.Components, arch)
	if err != nil {
		return nil, err
	}
	for i := range n.Downloads {
		out = append(out, downloadArtifact(&n.Downloads[i], indexPath("downloads", i)))
	}
	for i := range n.Images {
		out = append(out, imageArtifact(&n.Images[i], indexPath("images", i)))
	}
	for i := range out {
		mirror(&out[i], n.Mirrors)
	}
	return out, nil
}

// HostArch returns the architecture of the running nodeprov binary in
// Expand's naming (runtime.GOARCH: amd64, arm64). Other values are returned
// as they are, and Expand rejects them.
func HostArch() string { return runtime.GOARCH }

// downloadArtifact expands one entry of downloads: as is, apart from the
// checksum entry name, which is the base name of the URL's path.
func downloadArtifact(d *Download, p string) Artifact {
	a := Artifact{
		Name:     p,
		SpecPath: p,
		URL:      d.URL,
		SHA256:   d.SHA256,
		SHA512:   d.SHA512,
		MaxSize:  int64(d.MaxSize),
	}
	if d.Checksum != nil {
		a.Checksum = &ChecksumRef{
			URL:       d.Checksum.URL,
			Algorithm: d.Checksum.Algorithm,
			Name:      urlBase(d.URL),
			Signature: signatureRef(d.Checksum.Signature),
		}
	}
	a.Signature = signatureRef(d.Signature)
	switch {
	case d.Extract != nil:
		a.Install = Install{
			Files:   copyMap(d.Extract.Files),
			To:      d.Extract.To,
			Include: append([]string(nil), d.Extract.Include...),
			Strip:   d.Extract.Strip,
		}
	default:
		a.Install = Install{Path: d.Path, Mode: d.Mode.Perm(0o644)}
	}
	a.Install.Links = copyMap(d.Links)
	return a
}

// ImagesDir holds the verified image archives of the spec's images.
const ImagesDir = "/var/lib/nodeprov/images"

// ImagePath is where the archive of an images entry is installed.
func ImagePath(img *Image) string { return path.Join(ImagesDir, urlBase(img.URL)) }

// imageArtifact expands one entry of images: a download installed at
// ImagePath, mode 0644.
func imageArtifact(img *Image, p string) Artifact {
	return downloadArtifact(&Download{URL: img.URL, SHA256: img.SHA256, SHA512: img.SHA512, Checksum: img.Checksum,
		Signature: img.Signature, MaxSize: img.MaxSize, Path: ImagePath(img), Mode: "0644"}, p)
}

func signatureRef(s *Signature) *SignatureRef {
	if s == nil {
		return nil
	}
	return &SignatureRef{URL: s.URL, Keyring: s.Keyring}
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// urlBase returns the last element of a URL's path ("runc.amd64" for
// https://h/v1/runc.amd64?x=y), unescaped.
func urlBase(s string) string {
	if u, err := url.Parse(s); err == nil && u.Path != "" {
		return path.Base(u.Path)
	}
	s, _, _ = strings.Cut(s, "?")
	return path.Base(s)
}

// mirror sets a.Upstream and rewrites every URL of a through the mirrors.
func mirror(a *Artifact, ms []Mirror) {
	a.Upstream = a.URL
	a.URL = mirrorURL(ms, a.URL)
	if c := a.Checksum; c != nil {
		c.URL = mirrorURL(ms, c.URL)
		if s := c.Signature; s != nil && s.URL != "" {
			s.URL = mirrorURL(ms, s.URL)
		}
	}
	if s := a.Signature; s != nil && s.URL != "" {
		s.URL = mirrorURL(ms, s.URL)
	}
}

// mirrorURL rewrites u by the mirror with the longest prefix of u, if any.
func mirrorURL(ms []Mirror, u string) string {
	best := -1
	for i, m := range ms {
		if m.Prefix != "" && strings.HasPrefix(u, m.Prefix) && (best < 0 || len(m.Prefix) > len(ms[best].Prefix)) {
			best = i
		}
	}
	if best < 0 {
		return u
	}
	return ms[best].To + strings.TrimPrefix(u, ms[best].Prefix)
}
