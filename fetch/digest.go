package fetch

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// Supported digest algorithms.
const (
	SHA256 = "sha256"
	SHA512 = "sha512"
)

// Digest is a content digest: an algorithm ("sha256" or "sha512") and the
// lower-case hex encoding of the hash.
type Digest struct {
	// Algorithm is SHA256 or SHA512.
	Algorithm string
	// Hex is the lower-case hex encoding of the hash.
	Hex string
}

// ParseDigest parses "sha256:<hex>" or "sha512:<hex>". The algorithm prefix
// is required; hex is case-insensitive and normalised to lower case; its
// length must match the algorithm.
func ParseDigest(s string) (Digest, error) {
	alg, hx, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return Digest{}, fmt.Errorf("parse digest %q: want sha256:<hex> or sha512:<hex>", s)
	}
	return NewDigest(strings.ToLower(alg), hx)
}

// NewDigest validates algorithm and hex and returns the normalised Digest.
func NewDigest(algorithm, hx string) (Digest, error) {
	n := hexLen(algorithm)
	if n == 0 {
		return Digest{}, fmt.Errorf("parse digest: unsupported algorithm %q (want sha256 or sha512)", algorithm)
	}
	hx = strings.ToLower(hx)
	if len(hx) != n {
		return Digest{}, fmt.Errorf("parse digest: %s wants %d hex digits, got %d", algorithm, n, len(hx))
	}
	if !isHex(hx) {
		return Digest{}, fmt.Errorf("parse digest: %s value %q is not hex", algorithm, hx)
	}
	return Digest{Algorithm: algorithm, Hex: hx}, nil
}

// String returns "algorithm:hex".
func (d Digest) String() string {
	if d.Algorithm == "" && d.Hex == "" {
		return ""
	}
	return d.Algorithm + ":" + d.Hex
}

// IsZero reports whether d is the zero Digest.
func (d Digest) IsZero() bool { return d.Algorithm == "" && d.Hex == "" }

// Validate reports whether d is a well-formed digest.
func (d Digest) Validate() error {
	_, err := NewDigest(d.Algorithm, d.Hex)
	return err
}

// hexLen is the hex length of a digest for algorithm, 0 if unsupported.
func hexLen(algorithm string) int {
	switch algorithm {
	case SHA256:
		return sha256.Size * 2
	case SHA512:
		return sha512.Size * 2
	}
	return 0
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return len(s) > 0
}

// hasher computes sha256 always and sha512 when asked, in one pass.
type hasher struct {
	s256 hash.Hash
	s512 hash.Hash // nil unless wanted
}

func newHasher(withSHA512 bool) *hasher {
	h := &hasher{s256: sha256.New()}
	if withSHA512 {
		h.s512 = sha512.New()
	}
	return h
}

// Write implements io.Writer; it never fails.
func (h *hasher) Write(p []byte) (int, error) {
	h.s256.Write(p)
	if h.s512 != nil {
		h.s512.Write(p)
	}
	return len(p), nil
}

// sums returns the digests computed so far.
func (h *hasher) sums() sums {
	s := sums{sha256: hex.EncodeToString(h.s256.Sum(nil))}
	if h.s512 != nil {
		s.sha512 = hex.EncodeToString(h.s512.Sum(nil))
	}
	return s
}

// sums holds the hex digests of one body.
type sums struct {
	sha256 string
	sha512 string // empty when not computed
}

// get returns the digest of the given algorithm, ok false when not computed.
func (s sums) get(algorithm string) (Digest, bool) {
	switch algorithm {
	case SHA256:
		return Digest{SHA256, s.sha256}, s.sha256 != ""
	case SHA512:
		return Digest{SHA512, s.sha512}, s.sha512 != ""
	}
	return Digest{}, false
}
