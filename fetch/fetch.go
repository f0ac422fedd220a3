package fetch

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	getter "github.com/hashicorp/go-getter/v2"
)

// Trust levels reported per artifact.
const (
	// TrustPinned: the digest was given by the caller (spec or lock file).
	TrustPinned = "pinned"
	// TrustSigned: the digest came from a checksum file whose OpenPGP
	// signature verified, or the artifact has a verified detached signature.
	TrustSigned = "signed"
	// TrustSameOrigin: the digest came from an unsigned checksum file served
	// next to the artifact: it detects corruption, not a compromised origin.
	TrustSameOrigin = "same-origin"
)

// Defaults for zero Fetcher fields.
const (
	DefaultMaxSize       int64 = 2 << 30
	DefaultParallel            = 4
	DefaultRetries             = 4
	DefaultIdleTimeout         = 30 * time.Second
	DefaultMaxRetryAfter       = 60 * time.Second

	// maxMetaSize caps checksum and signature files.
	maxMetaSize int64 = 1 << 20
	backoffBase       = 500 * time.Millisecond
	backoffMax        = 30 * time.Second
)

// SignatureSource is an OpenPGP signature and the keyring that must have
// made it.
type SignatureSource struct {
	// URL of a detached signature (.asc armored, or binary). Empty on a
	// ChecksumSource means the checksum file itself is clearsigned.
	URL string
	// Keyring holds the trusted keys and the expiry policy.
	Keyring *Keyring
}

// ChecksumSource is a checksum file that lists the artifact's digest.
type ChecksumSource struct {
	// URL of the checksum file.
	URL string
	// Algorithm "sha256" or "sha512"; "" accepts either (from the hex
	// length or BSD tag).
	Algorithm string
	// Name of the artifact's entry; "" means the base name of the
	// artifact URL's path. A bare-hash file ignores it.
	Name string
	// Signature, when set, must verify before the file is trusted: a
	// detached signature (URL set) or a clearsigned file (URL empty).
	// Without it the digest is reported as same-origin (a clearsigned file
	// is then parsed but not verified).
	Signature *SignatureSource
}

// Request is one artifact to fetch. At least one of Pinned, Checksum or
// Signature must be set. Pinned wins: when it is set, Checksum and
// Signature are not consulted.
type Request struct {
	// URL of the artifact: http, https or file.
	URL string
	// Pinned digest from the spec or the lock file.
	Pinned *Digest
	// PinTrust is how the pinned digest was established: "" or TrustPinned
	// for a digest the operator wrote (spec, hand-written lock entry),
	// TrustSigned or TrustSameOrigin for a lock entry recorded by
	// `nodeprov lock` or resolved while planning. It is authoritative: a
	// same-origin pin is refused under RequirePinned like the unsigned
	// checksum file it came from.
	PinTrust string
	// Checksum file to read the digest from.
	Checksum *ChecksumSource
	// Signature is a detached signature of the artifact itself (URL and
	// Keyring required). It upgrades the trust to signed, and on its own is
	// enough to accept an artifact.
	Signature *SignatureSource
	// MaxSize caps the artifact in bytes; 0 means DefaultMaxSize.
	MaxSize int64
	// Inspect, when set, reads the artifact's bytes while they arrive over
	// HTTP(S), once per download attempt, so that work on them (checking
	// an archive) overlaps the transfer. Its verdict is in the Result
	// (Inspected, InspectErr), and means something only because the bytes
	// then verified. A cached or file:// artifact is not inspected.
	Inspect func(io.Reader) error
}

// Result describes one verified artifact in the cache.
type Result struct {
	// URL as requested.
	URL string
	// SHA256 of the content, hex: the cache key.
	SHA256 string
	// Digest is the digest that was verified (pinned, from the checksum
	// file, or the sha256 of a signature-only artifact).
	Digest Digest
	// Path of the read-only cache file.
	Path string
	// Trust is TrustPinned, TrustSigned or TrustSameOrigin.
	Trust string
	// SignedBy names the key whose signature was verified, if any:
	// "FINGERPRINT (user id)"; two entries separated by "; " when the
	// checksum file and the artifact were signed by different keys.
	SignedBy string
	// KeyExpired reports that the signing key or signature had expired and
	// was accepted because the keyring allows expired keys.
	KeyExpired bool
	// FromCache reports that the artifact was already cached and not
	// downloaded.
	FromCache bool
	// Bytes is the artifact size.
	Bytes int64
	// Inspected says Request.Inspect read these very bytes; InspectErr is
	// what it returned.
	Inspected  bool  `json:"-"`
	InspectErr error `json:"-"`
}

// Resolution is what Resolve learns about an artifact.
type Resolution struct {
	// Digest to pin (sha256 or sha512, as the source gave it).
	Digest Digest
	// Trust is TrustPinned, TrustSigned or TrustSameOrigin.
	Trust string
	// SignedBy names the verifying key(s), as in Result.
	SignedBy string
	// KeyExpired as in Result.
	KeyExpired bool
}

// Fetcher downloads and verifies artifacts into a content-addressed cache.
// Zero fields take the defaults above. A Fetcher is safe for concurrent use
// once configured; do not change or copy it after the first call.
type Fetcher struct {
	// CacheDir is the cache root (e.g. /var/cache/nodeprov). Required.
	CacheDir string
	// Parallel bounds concurrent downloads (default 4).
	Parallel int
	// Retries is the number of retries after a transient failure; 0 means
	// DefaultRetries, a negative value disables retries.
	Retries int
	// IdleTimeout fails a download when no byte arrives for this long
	// (also bounds connect, TLS handshake and waiting for headers). There is
	// no whole-download deadline.
	IdleTimeout time.Duration
	// MaxRetryAfter caps a server's Retry-After (default 60s).
	MaxRetryAfter time.Duration
	// Progress receives download progress; nil prints nothing.
	Progress Progress
	// RequirePinned refuses digests that are only same-origin, on every
	// path: Fetch, Resolve and Admit (see Admit).
	RequirePinned bool
	// VerifyCached re-hashes a cache hit before trusting it (for caches
	// carried in from elsewhere); a bad entry is removed and re-fetched.
	VerifyCached bool
	// Proxy chooses the proxy per request. nil means HTTP_PROXY,
	// HTTPS_PROXY and NO_PROXY, read from the environment when the Fetcher
	// is first used.
	Proxy func(*http.Request) (*url.URL, error)
	// RootCAs for TLS; nil means the system pool.
	RootCAs *x509.CertPool
	// DialContext replaces the network dialer (tests, custom resolution).
	// Link-local addresses are refused either way.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// RegistryConfig is the contents of a docker-style config.json whose
	// "auths" give credentials for oci:// registries; nil means anonymous.
	// Credential helpers are not run.
	RegistryConfig []byte
	// Arch picks an oci:// index's linux/<arch> manifest; "" means the
	// running architecture.
	Arch string

	// lookup replaces the resolver the redirect policy uses (tests).
	lookup lookupFunc

	// sleep waits between retries; tests replace it to observe waits.
	sleep func(ctx context.Context, d time.Duration) error

	once   sync.Once
	ready  error
	client *getter.Client
	http   *http.Client // go-getter's, and oci:// registries'
}

// Prepare creates the cache layout and removes the staging files of
// downloads that were interrupted, without fetching anything. Fetch and
// Resolve do it themselves; a run that may fetch nothing calls it so that
// an interrupted run's partial downloads do not stay in the cache.
func (f *Fetcher) Prepare() error { return f.setup() }

// setup creates the cache layout, removes stale staging files and builds
// the transport, once.
func (f *Fetcher) setup() error {
	f.once.Do(func() {
		if err := cacheDirs(f.CacheDir); err != nil {
			f.ready = err
			return
		}
		if err := cleanStale(f.CacheDir); err != nil {
			f.ready = err
			return
		}
		sweepLocks(f.CacheDir)
		hc := newHTTPClient(httpConfig{
			proxy:       f.Proxy,
			rootCAs:     f.RootCAs,
			dial:        f.DialContext,
			lookup:      f.lookup,
			idleTimeout: f.idleTimeout(),
			parallel:    f.parallel(),
		})
		f.http = hc
		f.client = &getter.Client{
			// Only these two getters: no git, hg, smb, s3, gcs; the
			// getters' own Detect only accepts full http(s)/file URLs, and
			// checkURL refuses the forced-getter syntax.
			Getters: []getter.Getter{
				&getter.HttpGetter{
					Client:                hc,
					Netrc:                 false,
					XTerraformGetDisabled: true,
					// No HEAD probe: with it, an existing destination is
					// resumed with Range or taken as complete.
					DoNotCheckHeadFirst: true,
					// ReadTimeout would be a whole-download deadline and
					// MaxBytes a silent truncation: both stay off.
					ReadTimeout: 0,
					MaxBytes:    0,
				},
				&getter.FileGetter{},
			},
			// Non-nil and empty: a nil map means go-getter's default,
			// unlimited decompressors keyed on the file extension.
			Decompressors:   map[string]getter.Decompressor{},
			DisableSymlinks: true,
		}
	})
	return f.ready
}

func (f *Fetcher) parallel() int {
	if f.Parallel > 0 {
		return f.Parallel
	}
	return DefaultParallel
}

func (f *Fetcher) retries() int {
	switch {
	case f.Retries < 0:
		return 0
	case f.Retries == 0:
		return DefaultRetries
	}
	return f.Retries
}

func (f *Fetcher) idleTimeout() time.Duration {
	if f.IdleTimeout > 0 {
		return f.IdleTimeout
	}
	return DefaultIdleTimeout
}

func (f *Fetcher) maxRetryAfter() time.Duration {
	if f.MaxRetryAfter > 0 {
		return f.MaxRetryAfter
	}
	return DefaultMaxRetryAfter
}

// Lookup reports the cache file for d without touching the network.
func (f *Fetcher) Lookup(d Digest) (string, bool) {
	return lookup(f.CacheDir, d)
}

// Fetch fetches all requests, in parallel (bounded by Parallel). It does not
// stop at the first failure: results[i] is filled for every request that
// succeeded and the returned error joins every failure (each naming its
// URL). A cached artifact is never downloaded again.
func (f *Fetcher) Fetch(ctx context.Context, reqs []Request) ([]Result, error) {
	if err := f.setup(); err != nil {
		return nil, err
	}
	results := make([]Result, len(reqs))
	memo := &metaMemo{m: map[string]*metaEntry{}}
	err := f.each(ctx, "fetch", reqs, func(i int) (err error) {
		results[i], err = f.fetchOne(ctx, reqs[i], memo)
		return err
	})
	return results, err
}

// each runs do for every request, at most f.parallel() at once, and joins
// the errors; requests not started when ctx ends fail with its error.
func (f *Fetcher) each(ctx context.Context, verb string, reqs []Request, do func(i int) error) error {
	errs := make([]error, len(reqs))
	sem := make(chan struct{}, f.parallel())
	var wg sync.WaitGroup
	for i := range reqs {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = fmt.Errorf("%s %s: %w", verb, redact(reqs[i].URL), ctx.Err())
				return
			}
			defer func() { <-sem }()
			errs[i] = do(i)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// checkURL accepts http, https and file URLs and refuses what go-getter
// would interpret: the forced-getter prefix ("git::…"), a "//" subdirectory
// in the path, and its magic query parameters (checksum, archive,
// filename). Fragments are refused too.
func checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadURL, err)
	}
	if i := strings.Index(raw, "::"); i >= 0 && i < strings.Index(raw+"://", "://") {
		return nil, fmt.Errorf("%w: go-getter forced-getter syntax", ErrBadURL)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return nil, fmt.Errorf("%w: no host", ErrBadURL)
		}
	case "file":
		if u.Host != "" || u.RawPath != "" || !strings.HasPrefix(u.Path, "/") {
			return nil, fmt.Errorf("%w: file urls must be file:///absolute/path", ErrBadURL)
		}
	case "oci":
		if _, err := ParseOCI(raw); err != nil {
			return nil, err
		}
		return u, nil
	default:
		return nil, fmt.Errorf("%w: scheme %q (want http, https, file or oci)", ErrBadURL, u.Scheme)
	}
	if u.Opaque != "" {
		return nil, fmt.Errorf("%w: opaque url", ErrBadURL)
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return nil, fmt.Errorf("%w: fragment", ErrBadURL)
	}
	beforeQuery, _, _ := strings.Cut(raw, "?")
	if _, rest, ok := strings.Cut(beforeQuery, "://"); ok && strings.Contains(rest, "//") {
		return nil, fmt.Errorf("%w: \"//\" in the path (go-getter subdirectory syntax)", ErrBadURL)
	}
	q := u.Query()
	for _, k := range []string{"checksum", "archive", "filename"} {
		if q.Has(k) {
			return nil, fmt.Errorf("%w: query parameter %q is interpreted by go-getter", ErrBadURL, k)
		}
	}
	return u, nil
}

// redact hides URL credentials in messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Redacted()
}
