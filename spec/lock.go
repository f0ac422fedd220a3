package spec

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
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
	// Trust records how each digest was established when it was locked
	// (signed, same-origin); informational.
	Trust map[string]string
}

// NewLock returns an empty lock.
func NewLock() *Lock { return &Lock{Pins: map[string]string{}, Trust: map[string]string{}} }

var lockDigest = regexp.MustCompile(`^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$`)

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
		if len(f) < 2 || len(f) > 3 || !lockDigest.MatchString(f[1]) {
			return nil, fmt.Errorf("%s:%d: expected `<url> sha256:<hex> [trust]`", name, n)
		}
		if prev, dup := l.Pins[f[0]]; dup && prev != f[1] {
			return nil, fmt.Errorf("%s:%d: %s is pinned twice with different digests", name, n, f[0])
		}
		l.Pins[f[0]] = f[1]
		if len(f) == 3 {
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
