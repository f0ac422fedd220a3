// Package machineid is the machine-id stage and `nodeprov seal`: it checks
// that /etc/machine-id identifies this host alone (or, in an image root, that
// the image is sealed so first boot generates one), and prepares images so
// their clones do not share an identity.
package machineid

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Files the stage and Seal look at, inside the target root.
const (
	// IDPath is systemd's machine id.
	IDPath = "/etc/machine-id"
	// DbusPath is D-Bus's copy of the id; libdbus reads it before
	// /etc/machine-id, and systemd falls back to it when /etc/machine-id is
	// empty, so a stale copy brings a cloned id back.
	DbusPath = "/var/lib/dbus/machine-id"
	// SealedPath lists the sha256 of every id an image had when it was
	// sealed, one lowercase hex digest per line.
	SealedPath = "/var/lib/nodeprov/sealed-machine-id"
	// Uninitialized is what /etc/machine-id holds in a sealed image: systemd
	// treats the next boot as the first and generates an id.
	Uninitialized = "uninitialized"
)

// idLen is the length of a machine id: 128 bits in lowercase hex.
const idLen = 32

// ParseID returns the id in the contents of a machine-id file: exactly 32
// lowercase hex characters, optionally followed by one newline, not all
// zeros. The error says what is wrong.
func ParseID(data string) (string, error) {
	id := strings.TrimSuffix(data, "\n")
	if len(id) != idLen {
		return "", fmt.Errorf("%d characters, want %d lowercase hex characters", len(id), idLen)
	}
	zero := true
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= '0' && c <= '9' || c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			return "", fmt.Errorf("uppercase hex %q at offset %d, want lowercase", c, i)
		default:
			return "", fmt.Errorf("character %q at offset %d is not hex", c, i)
		}
		if c != '0' {
			zero = false
		}
	}
	if zero {
		return "", errors.New("all zeros (the null id)")
	}
	return id, nil
}

// NewID returns a new random machine id the way systemd's
// sd_id128_randomize makes one: 128 bits from crypto/rand with the version
// and variant bits of an RFC 4122 version 4 UUID, in lowercase hex.
func NewID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails: crypto/rand crashes the program instead
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return hex.EncodeToString(b[:])
}

// SealedHash is what SealedPath records for id: the lowercase hex sha256 of
// the 32-character id, without a newline. The file holds hashes, not ids, so
// an image does not carry its old identity in the clear.
func SealedHash(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// Abbrev shortens an id for messages: "1234…cdef". Other strings are
// returned unchanged.
func Abbrev(id string) string {
	if len(id) != idLen {
		return id
	}
	return id[:4] + "…" + id[idLen-4:]
}

// parseSealed parses the contents of SealedPath into its set of hashes.
func parseSealed(data string) (map[string]bool, error) {
	hashes := map[string]bool{}
	for i, line := range strings.Split(data, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if !isSHA256(line) {
			return nil, fmt.Errorf("%s line %d: %q is not a lowercase hex sha256; fix or delete the line", SealedPath, i+1, short(line))
		}
		hashes[line] = true
	}
	return hashes, nil
}

func isSHA256(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// short quotes at most 40 bytes of s for messages.
func short(s string) string {
	const limit = 40
	if len(s) > limit {
		return s[:limit] + "…"
	}
	return s
}
