package fetch

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path"
	"sync"
)

// Digest resolution: where an artifact's expected digest comes from (a
// pin, a checksum file, signatures) and the trust policy (Admit).

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
	staged, _, _, _, err := f.download(ctx, rawURL, maxMetaSize, false, "", nil, nil)
	if err != nil {
		e.err = fmt.Errorf("%s: %w", redact(rawURL), err)
		return nil, e.err
	}
	defer os.Remove(staged)
	e.data, e.err = os.ReadFile(staged)
	return e.data, e.err
}

// FetchFile downloads a small file (a checksum file, a signature) as it is,
// under the metadata size cap, for `nodeprov mirror`, which copies them
// next to the artifacts they verify.
func (f *Fetcher) FetchFile(ctx context.Context, rawURL string) ([]byte, error) {
	if err := f.setup(); err != nil {
		return nil, err
	}
	return f.fetchMeta(ctx, rawURL, &metaMemo{m: map[string]*metaEntry{}})
}

// FileSHA256 is the hex SHA-256 of a file.
func FileSHA256(path string) (string, error) {
	s, _, err := hashFile(path, false)
	return s.sha256, err
}
