package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync"

	godigest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// Artifacts from OCI registries (oci:// URLs), fetched with oras-go.
//
//	oci://host[:port]/repo:tag[@sha256:<manifest digest>]
//	oci://host[:port]/repo@sha256:<manifest digest>
//	oci://host[:port]/dir/.../<file>
//
// The last form is what `nodeprov mirror` pushes and what mirrors: turns
// an https URL into: one artifact per file, tagged with the file's name
// in a repository named after the URL's directory. A repository path is
// lower-cased and every character a repository name cannot hold becomes
// '-', so that github.com/Mirantis/cri-dockerd has a repository too.
//
// The manifest (an image or artifact manifest, or an index, from which
// the entry for linux/<arch> is taken) is metadata: it is read outside the
// download's metering, capped at 4 MiB, and checked against the URL's
// manifest digest when there is one. Its one layer, or the one whose
// org.opencontainers.image.title is the file's name, is the artifact:
// streamed like any download (size cap, idle timeout, progress, hashing)
// and its bytes checked against the layer digest the manifest names. The
// digest the artifact is then verified against comes, as for https, from
// the spec's pin or the lock (a checksum file may be an oci:// URL too).
//
// Registries on loopback are spoken to over plain HTTP, as containerd and
// Docker do by default; every other one over HTTPS with the spec's CAs.

// TitleAnnotation names a layer's file.
const TitleAnnotation = ocispec.AnnotationTitle

// Annotations `nodeprov mirror` sets on each manifest.
const (
	UpstreamURLAnnotation    = "io.nodeprov.upstream.url"
	UpstreamDigestAnnotation = "io.nodeprov.upstream.digest"
)

// maxManifestBytes caps a manifest or index read.
const maxManifestBytes = 4 << 20

// OCIRef is a parsed oci:// URL.
type OCIRef struct {
	// Host is host[:port] of the registry.
	Host string
	// Repository is the repository path, normalised.
	Repository string
	// Tag is the tag, "" with only a digest.
	Tag string
	// Manifest is the manifest digest ("sha256:…"), "" when the URL has
	// none.
	Manifest string
	// File is the layer title picked when the manifest has several layers:
	// the tag in the mirror form, else "".
	File string
}

// The expressions compile on first use: most runs see no oci:// URL.
var (
	ociTag    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`) })
	ociDigest = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^sha256:[0-9a-f]{64}$`) })
	repoBad   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[^a-z0-9._/-]+`) })
)

// ParseOCI parses an oci:// URL.
func ParseOCI(raw string) (OCIRef, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "oci" {
		return OCIRef{}, fmt.Errorf("%w: %q is not an oci:// URL", ErrBadURL, raw)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return OCIRef{}, fmt.Errorf("%w: oci:// URL %q: expected oci://host[:port]/repository[:tag][@sha256:digest], without credentials, query or fragment", ErrBadURL, raw)
	}
	p := strings.TrimPrefix(u.Path, "/")
	var ref OCIRef
	ref.Host = u.Host
	if i := strings.LastIndex(p, "@"); i >= 0 {
		ref.Manifest, p = p[i+1:], p[:i]
		if !ociDigest().MatchString(ref.Manifest) {
			return OCIRef{}, fmt.Errorf("%w: oci:// URL %q: manifest digest %q is not sha256:<64 hex>", ErrBadURL, raw, ref.Manifest)
		}
	}
	dir, last := "", p
	if i := strings.LastIndex(p, "/"); i >= 0 {
		dir, last = p[:i], p[i+1:]
	}
	if name, tag, ok := strings.Cut(last, ":"); ok {
		ref.Repository, ref.Tag = strings.Trim(dir+"/"+name, "/"), tag
	} else if ref.Manifest != "" {
		ref.Repository = p // repo@digest
	} else {
		ref.Repository, ref.Tag, ref.File = dir, ociTagFor(last), last
	}
	ref.Repository = NormalizeRepository(ref.Repository)
	switch {
	case ref.Repository == "":
		return OCIRef{}, fmt.Errorf("%w: oci:// URL %q has no repository", ErrBadURL, raw)
	case ref.Tag == "" && ref.Manifest == "":
		return OCIRef{}, fmt.Errorf("%w: oci:// URL %q names neither a tag nor a manifest digest", ErrBadURL, raw)
	case ref.Tag != "" && !ociTag().MatchString(ref.Tag):
		return OCIRef{}, fmt.Errorf("%w: oci:// URL %q: %q is not a valid tag", ErrBadURL, raw, ref.Tag)
	}
	return ref, nil
}

// NormalizeRepository turns a URL directory into a repository name: lower
// case, and runs of characters a repository path cannot hold become '-'.
func NormalizeRepository(dir string) string {
	parts := strings.Split(strings.ToLower(dir), "/")
	out := parts[:0]
	for _, s := range parts {
		s = strings.Trim(repoBad().ReplaceAllString(s, "-"), "._-")
		if s != "" {
			out = append(out, s)
		}
	}
	return strings.Join(out, "/")
}

// ociTagFor is the tag of a file in the mirror form: its name, with
// characters a tag cannot hold replaced by '_'.
func ociTagFor(file string) string {
	var b strings.Builder
	for i, r := range file {
		ok := r < 0x80 && (r == '_' || r == '.' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		if !ok || i == 0 && (r == '.' || r == '-') {
			r = '_'
		}
		b.WriteRune(r)
	}
	s := b.String()
	if len(s) > 128 {
		s = s[:128]
	}
	return s
}

// String is the URL of r.
func (r OCIRef) String() string {
	s := "oci://" + r.Host + "/" + r.Repository
	if r.Tag != "" {
		if r.File != "" {
			s += "/" + r.File
		} else {
			s += ":" + r.Tag
		}
	}
	if r.Manifest != "" {
		s += "@" + r.Manifest
	}
	return s
}

// PlainHTTP reports whether the registry is spoken to over plain HTTP: a
// loopback host.
func (r OCIRef) PlainHTTP() bool {
	h, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		h = r.Host
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

// ociRepository is the oras repository of ref, speaking through the
// fetcher's HTTP client (proxy, CAs, redirect policy, link-local refusal)
// with the credentials of the fetcher's registry config.
func (f *Fetcher) ociRepository(ref OCIRef) (*remote.Repository, error) {
	cred, err := registryCredentials(f.RegistryConfig)
	if err != nil {
		return nil, err
	}
	return &remote.Repository{
		Reference:        registry.Reference{Registry: ref.Host, Repository: ref.Repository},
		Client:           &auth.Client{Client: f.http, Credential: cred, Cache: auth.NewCache()},
		PlainHTTP:        ref.PlainHTTP(),
		MaxMetadataBytes: maxManifestBytes,
	}, nil
}

// OCIRepository is ociRepository for `nodeprov mirror`, which pushes.
func (f *Fetcher) OCIRepository(ref OCIRef) (*remote.Repository, error) {
	if err := f.setup(); err != nil {
		return nil, err
	}
	return f.ociRepository(ref)
}

// ociLayer resolves ref to the descriptor of the artifact's layer: the
// manifest (checked against ref.Manifest), through an index to the
// manifest of linux/<arch> (checked against the index's digest for it).
func (f *Fetcher) ociLayer(ctx context.Context, repo *remote.Repository, ref OCIRef) (ocispec.Descriptor, error) {
	reference := ref.Manifest
	if reference == "" {
		reference = ref.Tag
	}
	body, mediaType, err := fetchManifest(ctx, repo, reference, ref.Manifest)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if mediaType == ocispec.MediaTypeImageIndex || mediaType == "application/vnd.docker.distribution.manifest.list.v2+json" {
		var idx ocispec.Index
		if err := json.Unmarshal(body, &idx); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("index of %s: %w", ref, err)
		}
		arch := f.Arch
		if arch == "" {
			arch = runtime.GOARCH
		}
		var pick *ocispec.Descriptor
		for i, m := range idx.Manifests {
			if m.Platform != nil && m.Platform.OS == "linux" && m.Platform.Architecture == arch {
				pick = &idx.Manifests[i]
				break
			}
		}
		if pick == nil {
			return ocispec.Descriptor{}, fmt.Errorf("index of %s has no manifest for linux/%s", ref, arch)
		}
		if body, _, err = fetchManifest(ctx, repo, pick.Digest.String(), pick.Digest.String()); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("manifest of %s: %w", ref, err)
	}
	switch {
	case len(m.Layers) == 1:
		return m.Layers[0], nil
	case len(m.Layers) == 0:
		return ocispec.Descriptor{}, fmt.Errorf("manifest of %s has no layers", ref)
	}
	var titles []string
	for _, l := range m.Layers {
		t := l.Annotations[TitleAnnotation]
		if ref.File != "" && t == ref.File {
			return l, nil
		}
		titles = append(titles, fmt.Sprintf("%q", t))
	}
	return ocispec.Descriptor{}, fmt.Errorf("manifest of %s has %d layers (titles %s) and none is titled %q", ref, len(m.Layers), strings.Join(titles, ", "), ref.File)
}

// fetchManifest reads a manifest by tag or digest, capped, and checks it
// against want (a digest) when given.
func fetchManifest(ctx context.Context, repo *remote.Repository, reference, want string) ([]byte, string, error) {
	desc, rc, err := repo.FetchReference(ctx, reference)
	if err != nil {
		return nil, "", fmt.Errorf("manifest %s/%s: %w", repo.Reference.Registry+"/"+repo.Reference.Repository, reference, err)
	}
	defer rc.Close()
	body, err := io.ReadAll(io.LimitReader(rc, maxManifestBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("manifest %s: %w", reference, err)
	}
	if len(body) > maxManifestBytes {
		return nil, "", fmt.Errorf("%w: manifest %s is larger than %d bytes", ErrTooLarge, reference, maxManifestBytes)
	}
	if want != "" {
		sum := sha256.Sum256(body)
		if got := "sha256:" + hex.EncodeToString(sum[:]); got != want {
			return nil, "", fmt.Errorf("%w: manifest of %s/%s: want %s, got %s", ErrDigestMismatch, repo.Reference.Registry, repo.Reference.Repository, want, got)
		}
	}
	return body, desc.MediaType, nil
}

// ociAttempt downloads the artifact of an oci:// URL into staged: the
// manifest outside the attempt, the layer through it (actx carries the
// attempt, so the transport meters and hashes the blob's body). It returns
// the layer's descriptor, whose digest the caller checks the bytes
// against.
func (f *Fetcher) ociAttempt(ctx, actx context.Context, rawURL, staged string, maxSize int64) (ocispec.Descriptor, error) {
	ref, err := ParseOCI(rawURL)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	repo, err := f.ociRepository(ref)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	layer, err := f.ociLayer(ctx, repo, ref)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if layer.Size > maxSize {
		return ocispec.Descriptor{}, fmt.Errorf("%w: layer of %s is %d bytes, above the %d byte cap", ErrTooLarge, ref, layer.Size, maxSize)
	}
	rc, err := repo.Blobs().Fetch(actx, layer)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("layer %s of %s: %w", layer.Digest, ref, err)
	}
	defer rc.Close()
	out, err := os.OpenFile(staged, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if _, err := io.Copy(out, rc); err != nil {
		out.Close()
		return ocispec.Descriptor{}, err
	}
	return layer, out.Close()
}

// checkLayer compares the bytes an oci:// attempt received with the layer
// descriptor the manifest gave for them.
func checkLayer(rawURL string, layer ocispec.Descriptor, got sums, n int64, wrapped bool) error {
	if !wrapped {
		return fmt.Errorf("%w: layer of %s: no body received", ErrTruncated, rawURL)
	}
	if n != layer.Size {
		return fmt.Errorf("%w: layer of %s: the manifest says %d bytes, %d arrived", ErrDigestMismatch, rawURL, layer.Size, n)
	}
	if layer.Digest.Algorithm() != "sha256" {
		return fmt.Errorf("%w: layer of %s: digest algorithm %s (only sha256 is supported)", ErrBadURL, rawURL, layer.Digest.Algorithm())
	}
	if want := layer.Digest.Encoded(); got.sha256 != want {
		return fmt.Errorf("%w: layer of %s: the manifest says sha256:%s, the bytes are sha256:%s", ErrDigestMismatch, rawURL, want, got.sha256)
	}
	return nil
}

// FileArtifactType is the artifactType of the one-file artifacts
// `nodeprov mirror` pushes.
const FileArtifactType = "application/vnd.nodeprov.file.v1"

// PushFile pushes the file at path as a one-layer OCI artifact (the layer
// titled title, the manifest carrying annotations) and tags it ref.Tag.
// Blobs the registry already has are not sent again. It returns the
// manifest's descriptor.
func (f *Fetcher) PushFile(ctx context.Context, ref OCIRef, path, title string, annotations map[string]string) (ocispec.Descriptor, error) {
	repo, err := f.OCIRepository(ref)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	file, err := os.Open(path)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer file.Close()
	s, n, err := hashFile(path, false)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	layer := ocispec.Descriptor{
		MediaType:   "application/octet-stream",
		Digest:      godigest.NewDigestFromEncoded(godigest.SHA256, s.sha256),
		Size:        n,
		Annotations: map[string]string{TitleAnnotation: title},
	}
	if ok, err := repo.Blobs().Exists(ctx, layer); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w", ref, err)
	} else if !ok {
		if err := repo.Blobs().Push(ctx, layer, file); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("push %s to %s: %w", title, ref, err)
		}
	}
	// The manifest is written here rather than by oras.PackManifest: the
	// oras root package costs every nodeprov run 0.6 ms of initialisation.
	config := ocispec.DescriptorEmptyJSON
	if ok, err := repo.Blobs().Exists(ctx, config); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w", ref, err)
	} else if !ok {
		if err := repo.Blobs().Push(ctx, config, bytes.NewReader(config.Data)); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("push config to %s: %w", ref, err)
		}
	}
	config.Data = nil
	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: FileArtifactType,
		Config:       config,
		Layers:       []ocispec.Descriptor{layer},
		Annotations:  annotations,
	})
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: godigest.FromBytes(manifest), Size: int64(len(manifest))}
	reference := ref.Tag
	if reference == "" {
		reference = desc.Digest.String()
	}
	if err := repo.PushReference(ctx, desc, bytes.NewReader(manifest), reference); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push manifest %s: %w", ref, err)
	}
	return desc, nil
}

// registryCredentials reads the "auths" of a docker-style config.json:
// per registry host, "auth" (base64 of user:password) or "username" and
// "password", or "identitytoken". Credential helpers ("credsStore",
// "credHelpers") would run programs as root and are not consulted.
func registryCredentials(config []byte) (auth.CredentialFunc, error) {
	if len(config) == 0 {
		return nil, nil
	}
	var doc struct {
		Auths map[string]struct {
			Auth          string `json:"auth"`
			Username      string `json:"username"`
			Password      string `json:"password"`
			IdentityToken string `json:"identitytoken"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(config, &doc); err != nil {
		return nil, fmt.Errorf("registry config: %w", err)
	}
	creds := map[string]auth.Credential{}
	for host, a := range doc.Auths {
		c := auth.Credential{Username: a.Username, Password: a.Password, RefreshToken: a.IdentityToken}
		if a.Auth != "" {
			dec, err := base64.StdEncoding.DecodeString(a.Auth)
			if err != nil {
				return nil, fmt.Errorf("registry config: auths.%s.auth is not base64", host)
			}
			user, pass, ok := strings.Cut(string(dec), ":")
			if !ok {
				return nil, fmt.Errorf("registry config: auths.%s.auth is not user:password", host)
			}
			c.Username, c.Password = user, pass
		}
		// Docker writes Docker Hub's key as a URL; other hosts as host[:port].
		host = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://"), "/")
		creds[host] = c
	}
	return func(_ context.Context, hostport string) (auth.Credential, error) {
		return creds[hostport], nil
	}, nil
}
