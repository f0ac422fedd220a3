package fetch

import (
	"bytes"
	"fmt"
	"path"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
)

// clearsignStart opens an OpenPGP clearsigned message.
const clearsignStart = "-----BEGIN PGP SIGNED MESSAGE-----"

// ParseChecksums finds the digest for the file called name in the checksum
// file data. It is ParseChecksumsWith with no algorithm constraint.
func ParseChecksums(data []byte, name string) (Digest, error) {
	return ParseChecksumsWith(data, name, "")
}

// ParseChecksumsWith finds the digest for the file called name in the
// checksum file data, optionally constrained to algorithm ("sha256",
// "sha512", or "" for either).
//
// Accepted line formats:
//
//	<hex>  <name>             GNU sha256sum/sha512sum, text mode
//	<hex> *<name>             GNU, binary mode
//	<hex> <name>              one space (shasum and friends)
//	\<hex>  <escaped name>    GNU escaping (\\ and \n in the name)
//	SHA256 (<name>) = <hex>   BSD/openssl tag format (SHA256, SHA512,
//	                          SHA2-256, SHA2-512; spaces optional)
//	<hex>                     a bare hash: only when it is the file's only line
//
// The algorithm follows from the hex length (64 sha256, 128 sha512) or the
// BSD tag; any other length is an error.
//
// Strictness rules: empty lines and lines starting with '#' are ignored. A
// well-formed BSD line for another algorithm (MD5, SHA1, SHA384, …) is
// ignored. Every other line must parse; one malformed line fails the whole
// file, even when another line matches name, because a checksum file with
// garbage in it is not trustworthy.
//
// Matching: an entry matches when its name equals name after stripping
// leading "./" on both sides; failing that, when their base names are equal
// (an entry "dist/runc.amd64" matches "runc.amd64"). Exact matches win over
// base-name matches. Several matching entries must agree: different digests,
// or different algorithms when algorithm is "", are an error.
//
// A clearsigned wrapper is stripped WITHOUT verifying the signature; text
// before or after the signed message is an error. Callers holding a keyring
// verify first (Fetcher does) and treat an unverified result as same-origin.
func ParseChecksumsWith(data []byte, name, algorithm string) (Digest, error) {
	body, _, err := splitClearsigned(data)
	if err != nil {
		return Digest{}, err
	}
	return parseChecksumBody(body, name, algorithm)
}

// splitClearsigned returns the signed text of a clearsigned message and the
// block, or data unchanged and a nil block when data is not clearsigned.
func splitClearsigned(data []byte) ([]byte, *clearsign.Block, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if !bytes.HasPrefix(trimmed, []byte(clearsignStart)) {
		return data, nil, nil
	}
	block, rest := clearsign.Decode(trimmed)
	if block == nil {
		return nil, nil, fmt.Errorf("%w: malformed clearsigned message", ErrChecksumFile)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, nil, fmt.Errorf("%w: unsigned text after the clearsigned message", ErrChecksumFile)
	}
	return block.Plaintext, block, nil
}

// checksumEntry is one parsed line.
type checksumEntry struct {
	digest Digest
	name   string // "" for a bare hash
	line   int
}

func parseChecksumBody(body []byte, name, algorithm string) (Digest, error) {
	if algorithm != "" && hexLen(algorithm) == 0 {
		return Digest{}, fmt.Errorf("%w: unsupported algorithm %q", ErrChecksumFile, algorithm)
	}
	var entries []checksumEntry
	var bare []checksumEntry
	lines := 0
	for i, raw := range strings.Split(string(body), "\n") {
		lineNo := i + 1
		line := strings.TrimSpace(strings.TrimSuffix(raw, "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		lines++
		e, skip, err := parseChecksumLine(line)
		if err != nil {
			return Digest{}, fmt.Errorf("%w: line %d: %w", ErrChecksumFile, lineNo, err)
		}
		if skip {
			continue
		}
		e.line = lineNo
		if e.name == "" {
			bare = append(bare, e)
			continue
		}
		entries = append(entries, e)
	}
	if len(bare) > 0 {
		if lines != 1 {
			return Digest{}, fmt.Errorf("%w: line %d: a bare hash is only allowed as the file's only line", ErrChecksumFile, bare[0].line)
		}
		d := bare[0].digest
		if algorithm != "" && d.Algorithm != algorithm {
			return Digest{}, fmt.Errorf("%w: bare hash is %s, want %s", ErrChecksumFile, d.Algorithm, algorithm)
		}
		return d, nil
	}
	if len(entries) == 0 {
		return Digest{}, fmt.Errorf("%w: no checksum lines", ErrChecksumFile)
	}
	if name == "" {
		return Digest{}, fmt.Errorf("%w: no file name to look up", ErrChecksumFile)
	}

	want := stripDotSlash(name)
	var exact, base []checksumEntry
	for _, e := range entries {
		if algorithm != "" && e.digest.Algorithm != algorithm {
			continue
		}
		switch en := stripDotSlash(e.name); {
		case en == want:
			exact = append(exact, e)
		case path.Base(en) == path.Base(want):
			base = append(base, e)
		}
	}
	matches := exact
	if len(matches) == 0 {
		matches = base
	}
	if len(matches) == 0 {
		if algorithm != "" {
			return Digest{}, fmt.Errorf("%w: no %s checksum for %q", ErrChecksumFile, algorithm, name)
		}
		return Digest{}, fmt.Errorf("%w: no checksum for %q", ErrChecksumFile, name)
	}
	first := matches[0]
	for _, e := range matches[1:] {
		if e.digest.Algorithm != first.digest.Algorithm {
			return Digest{}, fmt.Errorf("%w: %q has both %s (line %d) and %s (line %d) entries: choose an algorithm",
				ErrChecksumFile, name, first.digest.Algorithm, first.line, e.digest.Algorithm, e.line)
		}
		if e.digest.Hex != first.digest.Hex {
			return Digest{}, fmt.Errorf("%w: several different checksums match %q (lines %d and %d)",
				ErrChecksumFile, name, first.line, e.line)
		}
	}
	return first.digest, nil
}

// stripDotSlash removes any number of leading "./".
func stripDotSlash(s string) string {
	for strings.HasPrefix(s, "./") {
		s = strings.TrimLeft(s[2:], "/")
	}
	return s
}

// parseChecksumLine parses one trimmed, non-empty line. skip reports a
// well-formed line for an unsupported algorithm.
func parseChecksumLine(line string) (e checksumEntry, skip bool, err error) {
	escaped := false
	l := line
	if strings.HasPrefix(l, `\`) {
		escaped = true
		l = l[1:]
	}
	// GNU (and bare): starts with a hex token.
	tok := l
	if i := strings.IndexAny(l, " \t"); i >= 0 {
		tok = l[:i]
	}
	if isHex(tok) {
		d, err := digestFromHex(tok)
		if err != nil {
			return e, false, err
		}
		rest := l[len(tok):]
		if rest == "" {
			if escaped {
				return e, false, fmt.Errorf("malformed line: escape marker without a file name")
			}
			return checksumEntry{digest: d}, false, nil
		}
		if rest[0] != ' ' {
			return e, false, fmt.Errorf("malformed line: want a space after the hash")
		}
		rest = rest[1:]
		if rest != "" && (rest[0] == ' ' || rest[0] == '*') {
			rest = rest[1:]
		}
		if rest == "" {
			return e, false, fmt.Errorf("malformed line: no file name after the hash")
		}
		if escaped {
			if rest, err = unescapeGNU(rest); err != nil {
				return e, false, err
			}
		}
		return checksumEntry{digest: d, name: rest}, false, nil
	}
	if escaped {
		return e, false, fmt.Errorf("malformed line")
	}
	// BSD: TAG (name) = hex
	open := strings.IndexByte(line, '(')
	closeP := strings.LastIndexByte(line, ')')
	if open <= 0 || closeP < open {
		return e, false, fmt.Errorf("malformed line: not a checksum line")
	}
	tag := strings.TrimSpace(line[:open])
	name := line[open+1 : closeP]
	rest := strings.TrimSpace(line[closeP+1:])
	if !isTag(tag) || name == "" || !strings.HasPrefix(rest, "=") {
		return e, false, fmt.Errorf("malformed line: not a checksum line")
	}
	hx := strings.TrimSpace(rest[1:])
	if !isHex(hx) {
		return e, false, fmt.Errorf("malformed line: %s value is not hex", tag)
	}
	var alg string
	switch strings.ToUpper(tag) {
	case "SHA256", "SHA2-256":
		alg = SHA256
	case "SHA512", "SHA2-512":
		alg = SHA512
	default:
		return e, true, nil
	}
	d, err := NewDigest(alg, hx)
	if err != nil {
		return e, false, fmt.Errorf("%s entry for %q: %d hex digits, want %d", tag, name, len(hx), hexLen(alg))
	}
	return checksumEntry{digest: d, name: name}, false, nil
}

// digestFromHex infers the algorithm from the hex length.
func digestFromHex(hx string) (Digest, error) {
	switch len(hx) {
	case hexLen(SHA256):
		return NewDigest(SHA256, hx)
	case hexLen(SHA512):
		return NewDigest(SHA512, hx)
	}
	return Digest{}, fmt.Errorf("hash has %d hex digits: neither sha256 (64) nor sha512 (128)", len(hx))
}

// isTag reports whether s looks like a BSD algorithm tag.
func isTag(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '/') {
			return false
		}
	}
	return true
}

// unescapeGNU undoes sha256sum's escaping of \\ and \n in names.
func unescapeGNU(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		i++
		if i == len(s) {
			return "", fmt.Errorf("malformed line: trailing backslash in file name")
		}
		switch s[i] {
		case '\\':
			b.WriteByte('\\')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		default:
			return "", fmt.Errorf("malformed line: unknown escape \\%c in file name", s[i])
		}
	}
	return b.String(), nil
}
