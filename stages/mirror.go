package stages

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nodeprov/nodeprov/fetch"
	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/artifacts"
	"github.com/nodeprov/nodeprov/stages/host"
)

// MirrorOptions configure Mirror (`nodeprov mirror`).
type MirrorOptions struct {
	Spec    *spec.Node
	RootDir string // where keyring, CA and registry config files are read
	Arches  []string
	// To is the mirror: oci://host[:port]/namespace, or a directory that
	// becomes a static HTTP tree.
	To string
	// URL is where clients reach a directory mirror (http(s)://… or
	// file://…); file://<To> when empty. Not used for an OCI mirror.
	URL string
	// Out receives the mirrored spec (node.yaml) and its lock
	// (nodeprov.lock).
	Out string
	// Cache is the download cache; a temporary one when empty.
	Cache string
	Downloads
}

// MirrorResult says what Mirror did.
type MirrorResult struct {
	// Copied and Present list the upstream URLs of the files copied into
	// the mirror and of those it already held.
	Copied, Present []string
	SpecFile        string
	LockFile        string
}

// mirrorFile is one file to mirror: an artifact or one of its checksum
// files and signatures, by its upstream URL.
type mirrorFile struct {
	upstream string
	local    string // verified cache file, or "" with data
	data     []byte
	digest   string // hex sha256 of the bytes
}

// Mirror copies every artifact the spec expands to, for every
// architecture, with its checksum files and signatures, into a mirror: an
// OCI registry (one artifact per file, annotated with its upstream URL and
// digest) or a directory laid out by upstream host and path. Artifacts are
// verified on the way as an apply verifies them. Files the mirror already
// holds, with the same digest, are not copied again. It writes a spec
// whose mirrors send each upstream host to the mirror, and the lock of
// what it verified (keyed by upstream URL, so it pins the mirrored
// artifacts too).
func Mirror(ctx context.Context, o MirrorOptions) (*MirrorResult, error) {
	keyrings, cas, err := loadTrust(o.RootDir, o.Spec)
	if err != nil {
		return nil, err
	}
	regCfg, err := registryConfig(o.RootDir, o.Spec, o.RegistryConfig)
	if err != nil {
		return nil, err
	}
	cache := o.Cache
	if cache == "" {
		if cache, err = os.MkdirTemp("", "nodeprov-mirror-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(cache)
	}
	f := &fetch.Fetcher{CacheDir: cache, Parallel: o.Parallel, RequirePinned: o.RequirePinned, IdleTimeout: o.IdleTimeout,
		RootCAs: cas, Progress: o.Progress, RegistryConfig: regCfg}
	lock, results, err := artifacts.FillCache(ctx, o.Spec, keyrings, o.Arches, o.Pins, f)
	if err != nil {
		return nil, err
	}
	files, hosts, err := mirrorFiles(ctx, f, o.Spec, o.Arches, results)
	if err != nil {
		return nil, err
	}
	dst, err := newMirrorDest(o, f)
	if err != nil {
		return nil, err
	}
	res := &MirrorResult{}
	for _, mf := range files {
		copied, err := dst.put(ctx, mf)
		if err != nil {
			return nil, fmt.Errorf("mirror %s: %w", mf.upstream, err)
		}
		if copied {
			res.Copied = append(res.Copied, mf.upstream)
		} else {
			res.Present = append(res.Present, mf.upstream)
		}
	}

	mirrored := *o.Spec
	mirrored.Mirrors = nil
	for _, h := range hosts {
		mirrored.Mirrors = append(mirrored.Mirrors, spec.Mirror{Prefix: h, To: dst.base(h)})
	}
	data, err := spec.Marshal(&mirrored)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	res.SpecFile = filepath.Join(o.Out, "node.yaml")
	res.LockFile = filepath.Join(o.Out, spec.LockFileName)
	if err := writeHostFile(res.SpecFile, data); err != nil {
		return nil, err
	}
	return res, writeHostFile(res.LockFile, lock.Marshal())
}

// mirrorFiles lists what to mirror, in expansion order: every artifact
// (its verified cache file) and its checksum files and signatures
// (fetched as they are), by upstream URL, each once; and the upstream
// URL prefixes (scheme and host) they come from. Upstream URLs are those
// of the spec expanded without its mirrors; the files are fetched through
// them.
func mirrorFiles(ctx context.Context, f *fetch.Fetcher, n *spec.Node, arches []string, results []fetch.Result) ([]mirrorFile, []string, error) {
	bare := *n
	bare.Mirrors = nil
	seen := map[string]bool{}
	var files []mirrorFile
	var hosts []string
	next := 0
	add := func(upstream, fetchURL, local string) error {
		if upstream == "" || seen[upstream] {
			return nil
		}
		seen[upstream] = true
		u, err := url.Parse(upstream)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
			return fmt.Errorf("%s: only http(s) upstreams can be mirrored", upstream)
		}
		if h := u.Scheme + "://" + u.Host + "/"; !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
		mf := mirrorFile{upstream: upstream, local: local}
		var err2 error
		if local != "" {
			mf.digest, err2 = fetch.FileSHA256(local)
		} else {
			if mf.data, err2 = f.FetchFile(ctx, fetchURL); err2 == nil {
				mf.digest = sha256Hex(mf.data)
			}
		}
		if err2 != nil {
			return err2
		}
		files = append(files, mf)
		return nil
	}
	for _, arch := range arches {
		arts, err := spec.Expand(n, arch)
		if err != nil {
			return nil, nil, err
		}
		ups, err := spec.Expand(&bare, arch)
		if err != nil {
			return nil, nil, err
		}
		for i, a := range arts {
			up := ups[i]
			if !seen[a.Upstream] {
				if next >= len(results) {
					return nil, nil, fmt.Errorf("%s: no verified download", a.Upstream)
				}
				if err := add(a.Upstream, a.URL, results[next].Path); err != nil {
					return nil, nil, err
				}
				next++
			}
			if a.Checksum != nil {
				if err := add(up.Checksum.URL, a.Checksum.URL, ""); err != nil {
					return nil, nil, err
				}
				if a.Checksum.Signature != nil && a.Checksum.Signature.URL != "" {
					if err := add(up.Checksum.Signature.URL, a.Checksum.Signature.URL, ""); err != nil {
						return nil, nil, err
					}
				}
			}
			if a.Signature != nil && a.Signature.URL != "" {
				if err := add(up.Signature.URL, a.Signature.URL, ""); err != nil {
					return nil, nil, err
				}
			}
		}
	}
	return files, hosts, nil
}

// mirrorDest is where Mirror copies files.
type mirrorDest interface {
	// put copies mf unless the mirror holds it already (false).
	put(ctx context.Context, mf mirrorFile) (bool, error)
	// base is what upstream prefix (scheme://host/) maps to.
	base(prefix string) string
}

func newMirrorDest(o MirrorOptions, f *fetch.Fetcher) (mirrorDest, error) {
	if strings.HasPrefix(o.To, "oci://") {
		u, err := url.Parse(o.To)
		if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("mirror %q: expected oci://host[:port]/namespace", o.To)
		}
		return &ociMirror{base0: strings.TrimRight(o.To, "/"), f: f}, nil
	}
	dir, err := filepath.Abs(o.To)
	if err != nil {
		return nil, err
	}
	base := o.URL
	if base == "" {
		base = "file://" + dir
	}
	return &dirMirror{dir: dir, url: strings.TrimRight(base, "/")}, nil
}

// upstreamPath is host/path of an upstream URL.
func upstreamPath(upstream string) string {
	_, rest, _ := strings.Cut(upstream, "://")
	return rest
}

// ociMirror pushes each file as a one-layer OCI artifact, tagged with its
// file name, in a repository named after its upstream directory under the
// mirror's namespace (fetch.ParseOCI's mirror form).
type ociMirror struct {
	base0 string
	f     *fetch.Fetcher
}

func (m *ociMirror) base(prefix string) string {
	return m.base0 + "/" + upstreamPath(prefix)
}

func (m *ociMirror) put(ctx context.Context, mf mirrorFile) (bool, error) {
	ref, err := fetch.ParseOCI(m.base0 + "/" + upstreamPath(mf.upstream))
	if err != nil {
		return false, err
	}
	digest := "sha256:" + mf.digest
	if have, err := m.holds(ctx, ref, digest); err != nil || have {
		return false, err
	}
	src := mf.local
	if src == "" {
		tmp, err := os.CreateTemp("", "nodeprov-mirror-file-")
		if err != nil {
			return false, err
		}
		defer os.Remove(tmp.Name())
		if _, err := tmp.Write(mf.data); err != nil {
			tmp.Close()
			return false, err
		}
		if err := tmp.Close(); err != nil {
			return false, err
		}
		src = tmp.Name()
	}
	_, err = m.f.PushFile(ctx, ref, src, path.Base(mf.upstream), map[string]string{
		fetch.UpstreamURLAnnotation:    mf.upstream,
		fetch.UpstreamDigestAnnotation: digest,
	})
	return err == nil, err
}

// holds reports whether ref's tag already names an artifact of the
// upstream digest.
func (m *ociMirror) holds(ctx context.Context, ref fetch.OCIRef, digest string) (bool, error) {
	repo, err := m.f.OCIRepository(ref)
	if err != nil {
		return false, err
	}
	_, rc, err := repo.FetchReference(ctx, ref.Tag)
	if err != nil {
		return false, nil // not there (or unreadable): push
	}
	defer rc.Close()
	body, err := io.ReadAll(io.LimitReader(rc, 4<<20))
	if err != nil {
		return false, nil
	}
	var man struct {
		Annotations map[string]string `json:"annotations"`
	}
	if json.Unmarshal(body, &man) != nil {
		return false, nil
	}
	return man.Annotations[fetch.UpstreamDigestAnnotation] == digest, nil
}

// dirMirror copies each file to <dir>/<upstream host>/<upstream path>.
type dirMirror struct {
	dir, url string
}

func (m *dirMirror) base(prefix string) string {
	return m.url + "/" + upstreamPath(prefix)
}

func (m *dirMirror) put(ctx context.Context, mf mirrorFile) (bool, error) {
	rel := path.Clean("/" + upstreamPath(mf.upstream))
	if sum, err := fetch.FileSHA256(filepath.Join(m.dir, filepath.FromSlash(rel))); err == nil && sum == mf.digest {
		return false, nil
	}
	var src io.Reader = bytes.NewReader(mf.data)
	if mf.local != "" {
		file, err := os.Open(mf.local)
		if err != nil {
			return false, err
		}
		defer file.Close()
		src = file
	}
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		return false, err
	}
	r, err := host.OpenRoot(m.dir)
	if err != nil {
		return false, err
	}
	defer r.Close()
	_, err = r.WriteFileFrom(rel, src, host.WriteOptions{Mode: 0o644})
	return err == nil, err
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
