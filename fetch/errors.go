package fetch

import (
	"fmt"
	"net/http"
	"strconv"
)

// Error is the type of the sentinel errors of this package. Being a string
// type, its values are constants: errors.Is(err, ErrTooLarge) works through
// any %w wrapping.
type Error string

// Error implements error.
func (e Error) Error() string { return string(e) }

// Sentinel errors. Each is wrapped with context (URL, sizes, digests) by the
// functions that return it.
const (
	// ErrNoDigest means a request has no pinned digest, no checksum source
	// and no detached signature, so nothing could verify the artifact.
	ErrNoDigest Error = "no digest: pin sha256/sha512 in the spec, run nodeprov lock, or give a checksum url"
	// ErrDigestMismatch means the downloaded bytes do not have the expected digest.
	ErrDigestMismatch Error = "digest mismatch"
	// ErrTooLarge means the body exceeded the size cap.
	ErrTooLarge Error = "size cap exceeded"
	// ErrTruncated means the body ended before Content-Length bytes arrived.
	ErrTruncated Error = "truncated"
	// ErrIdleTimeout means no byte arrived within the idle timeout.
	ErrIdleTimeout Error = "idle timeout"
	// ErrRedirect means a redirect was refused by the redirect policy.
	ErrRedirect Error = "redirect refused"
	// ErrSameOrigin means a digest came only from the artifact's own origin
	// (an unsigned checksum file, or a pin recorded from one) while pinned
	// digests are required.
	ErrSameOrigin Error = "pinned digests are required: pin sha256/sha512 in the spec, lock it from a signed source, or verify an OpenPGP signature"
	// ErrSignature means an OpenPGP signature did not verify.
	ErrSignature Error = "signature verification failed"
	// ErrUnknownKey means a signature was made by a key that is not in the keyring.
	ErrUnknownKey Error = "signature made by a key not in the keyring"
	// ErrKeyExpired means the signing key or the signature has expired and
	// the keyring does not allow expired keys.
	ErrKeyExpired Error = "signing key or signature expired"
	// ErrKeyRevoked means the signing key has been revoked. It is refused
	// even when expired keys are allowed.
	ErrKeyRevoked Error = "signing key revoked"
	// ErrChecksumFile means a checksum file could not be used (malformed, no
	// entry, ambiguous).
	ErrChecksumFile Error = "checksum file"
	// ErrBadURL means a URL is not acceptable (scheme, go-getter magic syntax).
	ErrBadURL Error = "unsupported url"
)

// StatusError is returned for an HTTP response outside 2xx.
type StatusError struct {
	// Code is the HTTP status code.
	Code int
	// RetryAfter is the raw Retry-After header, if any.
	RetryAfter string
}

// Error implements error.
func (e *StatusError) Error() string {
	if text := http.StatusText(e.Code); text != "" {
		return "http status " + strconv.Itoa(e.Code) + " " + text
	}
	return "http status " + strconv.Itoa(e.Code)
}

// MismatchError reports a digest mismatch. It wraps ErrDigestMismatch.
type MismatchError struct {
	// URL of the artifact (credentials redacted).
	URL string
	// Want is the expected digest.
	Want Digest
	// Got is the digest of the bytes received, same algorithm.
	Got Digest
}

// Error implements error.
func (e *MismatchError) Error() string {
	return fmt.Sprintf("fetch %s: digest mismatch: want %s got %s", e.URL, e.Want, e.Got)
}

// Unwrap lets errors.Is(err, ErrDigestMismatch) match.
func (e *MismatchError) Unwrap() error { return ErrDigestMismatch }
