package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"

	getter "github.com/hashicorp/go-getter/v2"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Downloading into the cache: one artifact fetched (or found cached),
// hashed while it streams into a staging file, verified, committed.

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
	staged, s, n, insp, err := f.download(ctx, r.URL, maxSize, exp.digest.Algorithm == SHA512, name, f.Progress, r.Inspect)
	if err != nil {
		return fail(err)
	}
	res.Inspected, res.InspectErr = insp.done, insp.err
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

// download fetches rawURL into a fresh staging file, retrying transient
// failures with a fresh staging file each attempt. On success the caller
// owns (and must remove or commit) the staging file.
func (f *Fetcher) download(ctx context.Context, rawURL string, maxSize int64, wantSHA512 bool, name string, progress Progress, inspect func(io.Reader) error) (string, sums, int64, inspection, error) {
	retries := f.retries()
	for try := 0; ; try++ {
		staged, err := newStaging(f.CacheDir)
		if err != nil {
			return "", sums{}, 0, inspection{}, err
		}
		s, n, insp, status, err := f.attemptOnce(ctx, rawURL, staged, maxSize, wantSHA512, name, progress, inspect)
		if err == nil {
			return staged, s, n, insp, nil
		}
		os.Remove(staged)
		if cerr := ctx.Err(); cerr != nil {
			if errors.Is(err, cerr) {
				return "", sums{}, 0, inspection{}, err
			}
			return "", sums{}, 0, inspection{}, fmt.Errorf("%w (last error: %v)", cerr, err)
		}
		transient, retryAfter := f.classify(err, status)
		if !transient || try >= retries {
			if try > 0 {
				return "", sums{}, 0, inspection{}, fmt.Errorf("%w (after %d attempts)", err, try+1)
			}
			return "", sums{}, 0, inspection{}, err
		}
		if err := f.wait(ctx, backoff(try, retryAfter)); err != nil {
			return "", sums{}, 0, inspection{}, err
		}
	}
}

// inspection is the outcome of a Request.Inspect over one attempt's bytes.
type inspection struct {
	done bool
	err  error
}

// inspector feeds an attempt's body to Request.Inspect through a pipe, in
// chunks of inspectChunk bytes (a pipe write waits for the reader: one
// hand-over per network read would cost more than the inspection). The
// inspector's goroutine always reads the pipe to its end, so the download
// never blocks on an inspector that gave up early.
type inspector struct {
	pw   *io.PipeWriter
	buf  []byte
	done chan error
}

const inspectChunk = 256 << 10

// feed passes the body's next bytes on.
func (in *inspector) feed(p []byte) {
	in.buf = append(in.buf, p...)
	if len(in.buf) >= inspectChunk {
		in.pw.Write(in.buf)
		in.buf = in.buf[:0]
	}
}

func startInspector(inspect func(io.Reader) error) *inspector {
	pr, pw := io.Pipe()
	in := &inspector{pw: pw, buf: make([]byte, 0, inspectChunk+64<<10), done: make(chan error, 1)}
	go func() {
		err := inspect(pr)
		io.Copy(io.Discard, pr)
		in.done <- err
	}()
	return in
}

// finish ends the stream (with the attempt's error, if any) and returns
// the inspector's verdict.
func (in *inspector) finish(err error) error {
	if err == nil && len(in.buf) > 0 {
		in.pw.Write(in.buf)
	}
	in.pw.CloseWithError(err)
	return <-in.done
}

// attemptOnce runs one go-getter download into staged.
func (f *Fetcher) attemptOnce(ctx context.Context, rawURL, staged string, maxSize int64, wantSHA512 bool, name string, progress Progress, inspect func(io.Reader) error) (sums, int64, inspection, *StatusError, error) {
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
	if inspect != nil {
		a.inspector = startInspector(inspect)
	}
	actx = context.WithValue(actx, attemptKey{}, a)

	u, _ := url.Parse(rawURL)
	if u.Scheme == "file" {
		fi, err := os.Stat(u.Path)
		if err != nil {
			return sums{}, 0, inspection{}, nil, err
		}
		if fi.Size() > maxSize {
			return sums{}, 0, inspection{}, nil, fmt.Errorf("%w: %d bytes is above the %d byte cap", ErrTooLarge, fi.Size(), maxSize)
		}
	}

	var gerr error
	var layer *ocispec.Descriptor
	if u.Scheme == "oci" {
		var d ocispec.Descriptor
		d, gerr = f.ociAttempt(ctx, actx, rawURL, staged, maxSize)
		layer = &d
	} else {
		_, gerr = f.client.Get(actx, &getter.Request{
			Src:             rawURL,
			Dst:             staged,
			GetMode:         getter.ModeFile,
			Copy:            true, // file://: copy, never symlink
			DisableSymlinks: true,
			Umask:           0o077,
		})
	}
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
	if err == nil && layer != nil {
		err = checkLayer(rawURL, *layer, result, n, wrapped)
	}
	a.finish(err)
	var insp inspection
	if a.inspector != nil {
		insp.err = a.inspector.finish(err)
		insp.done = err == nil && wrapped
	}
	if err != nil {
		return sums{}, 0, inspection{}, se, err
	}
	if wrapped {
		return result, n, insp, nil, nil
	}
	// file:// (no HTTP body went through our transport): hash the staged
	// copy, one pass.
	s, n, err := hashFile(staged, wantSHA512)
	if err != nil {
		return sums{}, 0, inspection{}, nil, fmt.Errorf("hash staged file: %w", err)
	}
	if n > maxSize {
		return sums{}, 0, inspection{}, nil, fmt.Errorf("%w: %d bytes is above the %d byte cap", ErrTooLarge, n, maxSize)
	}
	return s, n, inspection{}, nil, nil
}
