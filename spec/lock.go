package spec

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
)

// LockFileName is the lock file `nodeprov lock` writes next to the spec.
const LockFileName = "nodeprov.lock"

// Lock pins the digest of every resolved download, like go.sum: one line
// per upstream URL (before mirrors, so a mirror change keeps the pins),
// sorted, so a version bump is a reviewable diff.
type Lock struct {
	// Pins maps upstream URLs to "sha256:<hex>" or "sha512:<hex>".
	Pins map[string]string
	// Trust records how each digest was established when it was locked:
	// pinned (the spec pinned it), signed (a verified OpenPGP signature) or
	// same-origin (an unsigned checksum file next to the artifact). It is
	// authoritative: a same-origin entry is not a pin under
	// --require-pinned. An entry without a trust column was written by
	// hand and counts as pinned.
	Trust map[string]string
}

// Trust levels of lock entries (the fetch package's, as words).
const (
	TrustPinned     = "pinned"
	TrustSigned     = "signed"
	TrustSameOrigin = "same-origin"
)

// Pin returns the digest locked for url and how it was established; ""
// when l (which may be nil) has no entry.
func (l *Lock) Pin(url string) (digest, trust string) {
	if l == nil {
		return "", ""
	}
	digest = l.Pins[url]
	if digest == "" {
		return "", ""
	}
	if trust = l.Trust[url]; trust == "" {
		trust = TrustPinned
	}
	return digest, trust
}

// Merge adds the entries of other (read from the file named name) to l.
// The same URL locked to two digests is an error naming both; the same
// digest recorded with two trust levels keeps the weaker one, so merging
// never upgrades trust.
func (l *Lock) Merge(name string, other *Lock) error {
	for u, d := range other.Pins {
		if prev, ok := l.Pins[u]; ok && prev != d {
			return fmt.Errorf("%s pins %s to %s, but another lock file pins %s", name, u, d, prev)
		}
		_, had := l.Pins[u]
		_, trust := other.Pin(u)
		if _, prevTrust := l.Pin(u); !had || trustRank(trust) < trustRank(prevTrust) {
			l.Trust[u] = trust
		}
		l.Pins[u] = d
	}
	return nil
}

// Len is the number of pinned URLs; 0 for a nil lock.
func (l *Lock) Len() int {
	if l == nil {
		return 0
	}
	return len(l.Pins)
}

func trustRank(t string) int {
	switch t {
	case TrustSameOrigin:
		return 0
	case TrustSigned:
		return 1
	}
	return 2
}

// NewLock returns an empty lock.
func NewLock() *Lock { return &Lock{Pins: map[string]string{}, Trust: map[string]string{}} }

var lockDigest = lazyRegexp(`^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$`)

// ParseLock reads a lock file; errors name the line.
func ParseLock(name string, data []byte) (*Lock, error) {
	l := NewLock()
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || len(f) > 3 || !lockDigest().MatchString(f[1]) {
			return nil, fmt.Errorf("%s:%d: expected `<url> sha256:<hex> [trust]`", name, n)
		}
		if prev, dup := l.Pins[f[0]]; dup && prev != f[1] {
			return nil, fmt.Errorf("%s:%d: %s is pinned twice with different digests", name, n, f[0])
		}
		l.Pins[f[0]] = f[1]
		if len(f) == 3 {
			switch f[2] {
			case TrustPinned, TrustSigned, TrustSameOrigin:
			default:
				return nil, fmt.Errorf("%s:%d: trust %q: expected pinned, signed or same-origin", name, n, f[2])
			}
			l.Trust[f[0]] = f[2]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return l, nil
}

// Marshal renders the lock file: a header, then one sorted line per URL.
func (l *Lock) Marshal() []byte {
	urls := make([]string, 0, len(l.Pins))
	for u := range l.Pins {
		urls = append(urls, u)
	}
	sort.Strings(urls)
	var b bytes.Buffer
	b.WriteString("# nodeprov.lock: digests of every download of the spec, written by `nodeprov lock`.\n")
	b.WriteString("# Commit it next to the spec; apply verifies every download against it.\n")
	for _, u := range urls {
		b.WriteString(u + " " + l.Pins[u])
		if t := l.Trust[u]; t != "" {
			b.WriteString(" " + t)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// ReadLocks reads lock files and merges them (Merge): required must exist
// (unless it is ""), a missing optional one is skipped. The same URL
// pinned to two digests is an error naming the file.
func ReadLocks(required string, optional ...string) (*Lock, error) {
	pins := NewLock()
	files := optional
	if required != "" {
		files = append([]string{required}, optional...)
	}
	for i, f := range files {
		data, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) && !(required != "" && i == 0) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read lock file: %w", err)
		}
		lock, err := ParseLock(f, data)
		if err != nil {
			return nil, err
		}
		if err := pins.Merge(f, lock); err != nil {
			return nil, err
		}
	}
	return pins, nil
}
