// Package fetch downloads release artifacts and verifies them before anything
// else in nodeprov may use them.
//
// The transport is hashicorp/go-getter v2, restricted to its HTTP getter
// (http and https) and its file getter (file://, always copying), and
// oras-go for oci:// sources (oci.go: manifest as capped metadata, the layer
// streamed through the same HTTP client and checked against the manifest's
// layer digest). Everything security-relevant is done here rather than by
// go-getter or oras:
//
//   - every artifact needs a digest: pinned by the caller (spec or lock file),
//     read from a checksum file (optionally OpenPGP-signed), or established by
//     a verified detached OpenPGP signature;
//   - the HTTP client's RoundTripper wraps every response body in a reader
//     that hashes while streaming, enforces a size cap with an error (never a
//     silent truncation), detects bodies shorter than Content-Length and
//     enforces an idle timeout (no byte for a while), not a whole-download
//     deadline;
//   - bytes land in a fresh staging file under <CacheDir>/tmp/ and only a
//     verified file is renamed into the content-addressed cache
//     <CacheDir>/sha256/<hex> (read-only, fsynced). A sha512 digest is
//     indexed by a small file <CacheDir>/sha512/<hex> whose content is
//     "sha256:<hex>\n", naming the sha256 entry;
//   - redirects: https→https across hosts is followed, a downgrade to http,
//     any other scheme and a link-local target (cloud metadata) are refused,
//     at most 10 hops;
//   - downloads run in parallel (bounded) and transient failures are retried
//     with exponential backoff and jitter, honouring Retry-After;
//   - each artifact is downloaded once per cache, also when several
//     processes share it (roots provisioned in parallel with one --cache):
//     looking it up, downloading, verifying and committing run under a
//     per-artifact flock in <CacheDir>/locks/, keyed by the expected digest
//     (or by the URL when only a detached signature will verify it; the
//     index <CacheDir>/urls/ then finds it again). See lock.go.
//
// Trust levels reported per artifact are TrustPinned, TrustSigned and
// TrustSameOrigin; Fetcher.RequirePinned refuses TrustSameOrigin.
//
// The package imports no other nodeprov package.
package fetch
