package fetch

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
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

	// lookup replaces the resolver the redirect policy uses (tests).
	lookup lookupFunc

	// sleep waits between retries; tests replace it to observe waits.
	sleep func(ctx context.Context, d time.Duration) error

	once   sync.Once
	ready  error
	client *getter.Client
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

// Resolve returns the digest and trust level of an artifact, downloading
// only what it must: a pinned digest is returned as is, a checksum file is
// read without fetching the artifact. The artifact itself is fetched (and
// cached) only when a detached signature is what establishes or upgrades
// its trust. RequirePinned applies as in Fetch: a lock made under it
// records no same-origin digest.
func (f *Fetcher) Resolve(ctx context.Context, r Request) (Resolution, error) {
	res, err := f.ResolveAll(ctx, []Request{r})
	if err != nil {
		return Resolution{}, err
	}
	return res[0], nil
}

// ResolveAll is Resolve for many requests, in parallel, sharing checksum
// and signature files between them.
func (f *Fetcher) ResolveAll(ctx context.Context, reqs []Request) ([]Resolution, error) {
	if err := f.setup(); err != nil {
		return nil, err
	}
	out := make([]Resolution, len(reqs))
	memo := &metaMemo{m: map[string]*metaEntry{}}
	err := f.each(ctx, "resolve", reqs, func(i int) (err error) {
		out[i], err = f.resolveOne(ctx, reqs[i], memo)
		return err
	})
	return out, err
}

func (f *Fetcher) resolveOne(ctx context.Context, r Request, memo *metaMemo) (Resolution, error) {
	if _, err := checkURL(r.URL); err != nil {
		return Resolution{}, fmt.Errorf("resolve %s: %w", redact(r.URL), err)
	}
	if err := f.Admit(r); err != nil {
		return Resolution{}, err
	}
	exp, err := f.expected(ctx, r, memo)
	if err != nil {
		return Resolution{}, fmt.Errorf("resolve %s: %w", redact(r.URL), err)
	}
	if r.Pinned != nil || r.Signature == nil {
		return Resolution{Digest: exp.digest, Trust: exp.trust, SignedBy: exp.signedBy, KeyExpired: exp.expired}, nil
	}
	// The artifact's own signature decides: fetch and verify it.
	res, err := f.fetchOne(ctx, r, memo)
	if err != nil {
		return Resolution{}, err
	}
	return Resolution{Digest: res.Digest, Trust: res.Trust, SignedBy: res.SignedBy, KeyExpired: res.KeyExpired}, nil
}

// Admit decides, before any request goes out, whether r may be used at
// all: under RequirePinned a request whose only digest source is the
// artifact's own origin — an unsigned checksum file, or a pin recorded with
// same-origin trust — is refused (with ErrSameOrigin, naming the URL). The
// decision needs no network because it depends only on the sources the
// request names. Fetch and Resolve call it; so does a caller that is about
// to trust an earlier result of r without fetching (an installed or cached
// artifact), so that no path skips the policy.
func (f *Fetcher) Admit(r Request) error {
	if !f.RequirePinned {
		return nil
	}
	var weak string
	switch {
	case r.Pinned != nil:
		if r.pinTrust() == TrustSameOrigin {
			weak = "its pinned digest was recorded from an unsigned checksum file (trust same-origin)"
		}
	case r.Signature != nil:
		// The artifact's own signature decides.
	case r.Checksum != nil && r.Checksum.Signature == nil:
		weak = "its digest comes only from the unsigned checksum file " + redact(r.Checksum.URL)
	}
	if weak == "" {
		return nil
	}
	return fmt.Errorf("%s: %s: %w", redact(r.URL), weak, ErrSameOrigin)
}

func (r Request) pinTrust() string {
	if r.PinTrust == "" {
		return TrustPinned
	}
	return r.PinTrust
}

// expectation is what is known before downloading an artifact.
type expectation struct {
	digest   Digest // zero when only a detached signature will decide
	trust    string // "" when only a detached signature will decide
	signedBy string
	expired  bool
}

// expected works out the digest to verify against, reading (and verifying)
// a checksum file when needed.
func (f *Fetcher) expected(ctx context.Context, r Request, memo *metaMemo) (expectation, error) {
	if r.Signature != nil && r.Pinned == nil {
		if r.Signature.URL == "" {
			return expectation{}, fmt.Errorf("%w: artifact signature needs a url", ErrSignature)
		}
		if r.Signature.Keyring == nil {
			return expectation{}, fmt.Errorf("%w: artifact signature %s has no keyring", ErrSignature, redact(r.Signature.URL))
		}
	}
	switch {
	case r.Pinned != nil:
		if err := r.Pinned.Validate(); err != nil {
			return expectation{}, fmt.Errorf("pinned digest: %w", err)
		}
		return expectation{digest: *r.Pinned, trust: r.pinTrust()}, nil
	case r.Checksum != nil:
		return f.fromChecksumFile(ctx, r, memo)
	case r.Signature != nil:
		return expectation{}, nil
	}
	return expectation{}, ErrNoDigest
}

func (f *Fetcher) fromChecksumFile(ctx context.Context, r Request, memo *metaMemo) (expectation, error) {
	cs := r.Checksum
	if _, err := checkURL(cs.URL); err != nil {
		return expectation{}, fmt.Errorf("checksum file: %w", err)
	}
	data, err := f.fetchMeta(ctx, cs.URL, memo)
	if err != nil {
		return expectation{}, fmt.Errorf("checksum file: %w", err)
	}
	exp := expectation{trust: TrustSameOrigin}
	var body []byte
	if sig := cs.Signature; sig != nil {
		if sig.Keyring == nil {
			return expectation{}, fmt.Errorf("checksum file %s: %w: no keyring", redact(cs.URL), ErrSignature)
		}
		var info SignatureInfo
		if sig.URL == "" {
			body, info, err = sig.Keyring.VerifyClearsigned(data)
		} else {
			var sigData []byte
			if sigData, err = f.fetchMeta(ctx, sig.URL, memo); err == nil {
				info, err = sig.Keyring.VerifyDetached(bytes.NewReader(data), sigData)
				body = data
			}
		}
		if err != nil {
			return expectation{}, fmt.Errorf("checksum file %s: %w", redact(cs.URL), err)
		}
		exp.trust, exp.signedBy, exp.expired = TrustSigned, info.String(), info.Expired
	} else {
		// Unverified: strip a clearsign wrapper, report same-origin.
		if body, _, err = splitClearsigned(data); err != nil {
			return expectation{}, fmt.Errorf("checksum file %s: %w", redact(cs.URL), err)
		}
	}
	name := cs.Name
	if name == "" {
		u, _ := url.Parse(r.URL)
		name = path.Base(u.Path)
	}
	d, err := parseChecksumBody(body, name, cs.Algorithm)
	if err != nil {
		return expectation{}, fmt.Errorf("checksum file %s: %w", redact(cs.URL), err)
	}
	exp.digest = d
	return exp, nil
}

// fetchOne fetches, verifies and caches one artifact.
func (f *Fetcher) fetchOne(ctx context.Context, r Request, memo *metaMemo) (Result, error) {
	shown := redact(r.URL)
	fail := func(err error) (Result, error) {
		var mm *MismatchError
		if errors.As(err, &mm) {
			return Result{}, err // already names the URL
		}
		return Result{}, fmt.Errorf("fetch %s: %w", shown, err)
	}
	u, err := checkURL(r.URL)
	if err != nil {
		return fail(err)
	}
	if err := f.Admit(r); err != nil {
		return Result{}, err
	}
	maxSize := r.MaxSize
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	exp, err := f.expected(ctx, r, memo)
	if err != nil {
		return fail(err)
	}
	verifySig := r.Signature != nil && r.Pinned == nil
	res := Result{URL: r.URL, Digest: exp.digest, Trust: exp.trust, SignedBy: exp.signedBy, KeyExpired: exp.expired}
	name := path.Base(u.Path)

	if exp.digest.IsZero() {
		// Only the artifact's detached signature decides (verifySig is
		// set): its digest is unknown until it is downloaded.
		if _, err := cacheSubdir(f.CacheDir, urlsDir, 0o755); err != nil {
			return fail(err)
		}
		lock, err := acquireEntryLock(ctx, f.CacheDir, urlLockName(r.URL), f.waiting(name))
		if err != nil {
			return fail(err)
		}
		defer lock.release()
		if d, ok := lookupURL(f.CacheDir, r.URL); ok {
			if p, ok := f.cached(d, true); ok {
				// Fetch the signature first: failing to get it fails the
				// request either way, while a signature that does not
				// cover the cached bytes (the artifact was replaced
				// upstream) means downloading it again.
				if _, err := f.fetchMeta(ctx, r.Signature.URL, memo); err != nil {
					return fail(fmt.Errorf("signature: %w", err))
				}
				hit := res
				if err := f.verifyArtifactSig(ctx, r, p, memo, &hit); err == nil {
					hit.Digest = Digest{SHA256, path.Base(p)}
					return f.fromCache(p, hit, fail)
				}
			}
		}
		return f.downloadVerified(ctx, r, exp, maxSize, name, verifySig, memo, res, fail)
	}

	// A cache hit needs no lock (entries appear by rename, complete), so a
	// complete cache on read-only media stays usable.
	if p, ok := f.cached(exp.digest, false); ok {
		return f.cachedResult(ctx, r, p, verifySig, memo, res, fail)
	}
	lock, err := acquireEntryLock(ctx, f.CacheDir, digestLockName(exp.digest), f.waiting(name))
	if err != nil {
		return fail(err)
	}
	defer lock.release()
	// Whoever held the lock before may have just committed it.
	if p, ok := f.cached(exp.digest, true); ok {
		return f.cachedResult(ctx, r, p, verifySig, memo, res, fail)
	}
	return f.downloadVerified(ctx, r, exp, maxSize, name, verifySig, memo, res, fail)
}

// cachedResult completes res from the cache entry p, verifying the
// artifact's own signature over it when the request has one.
func (f *Fetcher) cachedResult(ctx context.Context, r Request, p string, verifySig bool, memo *metaMemo, res Result, fail func(error) (Result, error)) (Result, error) {
	if verifySig {
		if err := f.verifyArtifactSig(ctx, r, p, memo, &res); err != nil {
			return fail(err)
		}
	}
	return f.fromCache(p, res, fail)
}

func (f *Fetcher) fromCache(p string, res Result, fail func(error) (Result, error)) (Result, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return fail(err)
	}
	res.Path, res.SHA256, res.Bytes, res.FromCache = p, path.Base(p), fi.Size(), true
	return res, nil
}

// downloadVerified downloads the artifact into a staging file, verifies it
// against the expected digest and its signature, and commits it to the
// cache. The caller holds the artifact's lock.
func (f *Fetcher) downloadVerified(ctx context.Context, r Request, exp expectation, maxSize int64, name string, verifySig bool, memo *metaMemo, res Result, fail func(error) (Result, error)) (Result, error) {
	staged, s, n, err := f.download(ctx, r.URL, maxSize, exp.digest.Algorithm == SHA512, name, f.Progress)
	if err != nil {
		return fail(err)
	}
	committed := false
	defer func() {
		if !committed {
			os.Remove(staged)
		}
	}()
	if !exp.digest.IsZero() {
		got, _ := s.get(exp.digest.Algorithm)
		if got != exp.digest {
			return fail(&MismatchError{URL: redact(r.URL), Want: exp.digest, Got: got})
		}
	} else {
		res.Digest = Digest{SHA256, s.sha256}
	}
	if verifySig {
		if err := f.verifyArtifactSig(ctx, r, staged, memo, &res); err != nil {
			return fail(err)
		}
	}
	if res.Trust == "" {
		return fail(ErrNoDigest) // unreachable: expected() guarantees a source
	}
	p, err := commit(f.CacheDir, staged, s)
	if err != nil {
		return fail(err)
	}
	committed = true
	if exp.digest.IsZero() {
		// Signature-only: let the next fetch of this URL find the entry.
		if err := writeURLIndex(f.CacheDir, r.URL, s.sha256); err != nil {
			return fail(err)
		}
	}
	res.Path, res.SHA256, res.Bytes = p, s.sha256, n
	return res, nil
}

// waiting returns the callback for a request that must wait for another
// download of the same artifact: the Progress hears of it when it can.
func (f *Fetcher) waiting(name string) func() {
	w, ok := f.Progress.(Waiter)
	if !ok {
		return nil
	}
	return func() { w.Waiting(name) }
}

// verifyArtifactSig checks the artifact's detached signature over the file
// at p (streamed) and upgrades res to signed.
func (f *Fetcher) verifyArtifactSig(ctx context.Context, r Request, p string, memo *metaMemo, res *Result) error {
	sigData, err := f.fetchMeta(ctx, r.Signature.URL, memo)
	if err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	file, err := os.Open(p)
	if err != nil {
		return err
	}
	defer file.Close()
	info, err := r.Signature.Keyring.VerifyDetached(file, sigData)
	if err != nil {
		return fmt.Errorf("signature %s: %w", redact(r.Signature.URL), err)
	}
	if res.SignedBy != "" && res.SignedBy != info.String() {
		res.SignedBy += "; " + info.String() // checksum file and artifact signed by different keys
	} else {
		res.SignedBy = info.String()
	}
	res.Trust = TrustSigned
	res.KeyExpired = res.KeyExpired || info.Expired
	return nil
}

// cached looks d up, re-hashing the entry when VerifyCached is set. A bad
// entry is removed when remove is set, which callers do only while they
// hold the artifact's lock (another process may be committing it anew).
func (f *Fetcher) cached(d Digest, remove bool) (string, bool) {
	p, ok := lookup(f.CacheDir, d)
	if !ok || !f.VerifyCached {
		return p, ok
	}
	s, _, err := hashFile(p, d.Algorithm == SHA512)
	if err != nil {
		return "", false
	}
	if got, _ := s.get(d.Algorithm); got != d || path.Base(p) != s.sha256 {
		if remove {
			os.Remove(p)
		}
		return "", false
	}
	return p, true
}

// metaMemo shares checksum and signature files between the requests of one
// call.
type metaMemo struct {
	mu sync.Mutex
	m  map[string]*metaEntry
}

type metaEntry struct {
	done chan struct{}
	data []byte
	err  error
}

// fetchMeta downloads a small file (checksum or signature) into memory,
// once per call.
func (f *Fetcher) fetchMeta(ctx context.Context, rawURL string, memo *metaMemo) ([]byte, error) {
	memo.mu.Lock()
	e, ok := memo.m[rawURL]
	if !ok {
		e = &metaEntry{done: make(chan struct{})}
		memo.m[rawURL] = e
	}
	memo.mu.Unlock()
	if ok {
		select {
		case <-e.done:
			return e.data, e.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	defer close(e.done)
	if _, err := checkURL(rawURL); err != nil {
		e.err = fmt.Errorf("%s: %w", redact(rawURL), err)
		return nil, e.err
	}
	staged, _, _, err := f.download(ctx, rawURL, maxMetaSize, false, "", nil)
	if err != nil {
		e.err = fmt.Errorf("%s: %w", redact(rawURL), err)
		return nil, e.err
	}
	defer os.Remove(staged)
	e.data, e.err = os.ReadFile(staged)
	return e.data, e.err
}

// download fetches rawURL into a fresh staging file, retrying transient
// failures with a fresh staging file each attempt. On success the caller
// owns (and must remove or commit) the staging file.
func (f *Fetcher) download(ctx context.Context, rawURL string, maxSize int64, wantSHA512 bool, name string, progress Progress) (string, sums, int64, error) {
	retries := f.retries()
	for try := 0; ; try++ {
		staged, err := newStaging(f.CacheDir)
		if err != nil {
			return "", sums{}, 0, err
		}
		s, n, status, err := f.attemptOnce(ctx, rawURL, staged, maxSize, wantSHA512, name, progress)
		if err == nil {
			return staged, s, n, nil
		}
		os.Remove(staged)
		if cerr := ctx.Err(); cerr != nil {
			if errors.Is(err, cerr) {
				return "", sums{}, 0, err
			}
			return "", sums{}, 0, fmt.Errorf("%w (last error: %v)", cerr, err)
		}
		transient, retryAfter := f.classify(err, status)
		if !transient || try >= retries {
			if try > 0 {
				return "", sums{}, 0, fmt.Errorf("%w (after %d attempts)", err, try+1)
			}
			return "", sums{}, 0, err
		}
		if err := f.wait(ctx, backoff(try, retryAfter)); err != nil {
			return "", sums{}, 0, err
		}
	}
}

// attemptOnce runs one go-getter download into staged.
func (f *Fetcher) attemptOnce(ctx context.Context, rawURL, staged string, maxSize int64, wantSHA512 bool, name string, progress Progress) (sums, int64, *StatusError, error) {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	a := &attempt{
		maxSize:     maxSize,
		idleTimeout: f.idleTimeout(),
		wantSHA512:  wantSHA512,
		cancel:      cancel,
		progress:    progress,
		name:        name,
	}
	actx = context.WithValue(actx, attemptKey{}, a)

	u, _ := url.Parse(rawURL)
	if u.Scheme == "file" {
		fi, err := os.Stat(u.Path)
		if err != nil {
			return sums{}, 0, nil, err
		}
		if fi.Size() > maxSize {
			return sums{}, 0, nil, fmt.Errorf("%w: %d bytes is above the %d byte cap", ErrTooLarge, fi.Size(), maxSize)
		}
	}

	_, gerr := f.client.Get(actx, &getter.Request{
		Src:             rawURL,
		Dst:             staged,
		GetMode:         getter.ModeFile,
		Copy:            true, // file://: copy, never symlink
		DisableSymlinks: true,
		Umask:           0o077,
	})
	err := a.failure()
	a.mu.Lock()
	status, retryAfter, wrapped, complete, result, n := a.status, a.retryAfter, a.wrapped, a.complete, a.result, a.n
	a.mu.Unlock()
	var se *StatusError
	if status != 0 && (status < 200 || status >= 300) && !(status >= 300 && status < 400) {
		se = &StatusError{Code: status, RetryAfter: retryAfter}
	}
	if err == nil && gerr != nil {
		if se != nil {
			err = se
		} else {
			err = gerr
		}
	}
	if err == nil && wrapped && !complete {
		err = fmt.Errorf("%w: body not read to the end", ErrTruncated)
	}
	a.finish(err)
	if err != nil {
		return sums{}, 0, se, err
	}
	if wrapped {
		return result, n, nil, nil
	}
	// file:// (no HTTP body went through our transport): hash the staged
	// copy, one pass.
	s, n, err := hashFile(staged, wantSHA512)
	if err != nil {
		return sums{}, 0, nil, fmt.Errorf("hash staged file: %w", err)
	}
	if n > maxSize {
		return sums{}, 0, nil, fmt.Errorf("%w: %d bytes is above the %d byte cap", ErrTooLarge, n, maxSize)
	}
	return s, n, nil, nil
}

// classify decides whether err is worth a retry and how long the server
// asked us to wait.
func (f *Fetcher) classify(err error, status *StatusError) (bool, time.Duration) {
	if status != nil {
		switch {
		case status.Code == http.StatusTooManyRequests, status.Code == http.StatusServiceUnavailable:
			return true, parseRetryAfter(status.RetryAfter, time.Now(), f.maxRetryAfter())
		case status.Code == http.StatusRequestTimeout, status.Code >= 500:
			return true, 0
		default:
			return false, 0
		}
	}
	return isTransient(err), 0
}

// isTransient reports network-level failures that a retry may fix.
func isTransient(err error) bool {
	switch {
	case errors.Is(err, ErrIdleTimeout), errors.Is(err, ErrTruncated):
		return true
	case errors.Is(err, ErrTooLarge), errors.Is(err, ErrDigestMismatch), errors.Is(err, ErrRedirect),
		errors.Is(err, ErrBadURL), errors.Is(err, ErrSignature), errors.Is(err, context.Canceled):
		return false
	}
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostErr) {
		return false
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return !dnsErr.IsNotFound
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return true
	}
	var opErr *net.OpError
	return errors.As(err, &opErr)
}

// parseRetryAfter reads delay-seconds or an HTTP date, capped at limit.
func parseRetryAfter(v string, now time.Time, limit time.Duration) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs > int64(limit/time.Second) {
			return limit
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), limit)
}

// backoff is exponential with jitter (between half and all of the step),
// and at least what the server asked for.
func backoff(try int, retryAfter time.Duration) time.Duration {
	step := backoffBase << min(try, 16)
	if step > backoffMax || step <= 0 {
		step = backoffMax
	}
	d := step/2 + rand.N(step/2+1)
	return max(d, retryAfter)
}

func (f *Fetcher) wait(ctx context.Context, d time.Duration) error {
	if f.sleep != nil {
		return f.sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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
	default:
		return nil, fmt.Errorf("%w: scheme %q (want http, https or file)", ErrBadURL, u.Scheme)
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
