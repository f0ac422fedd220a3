package machineid

import (
	"strings"
	"testing"
)

func TestParseID(t *testing.T) {
	tests := []struct {
		name, in string
		want     string
		errLike  string
	}{
		{"plain", idA, idA, ""},
		{"trailing newline", idA + "\n", idA, ""},
		{"two newlines", idA + "\n\n", "", "33 characters"},
		{"crlf", idA + "\r\n", "", "33 characters"},
		{"uppercase", strings.ToUpper(idA), "", "uppercase"},
		{"31 chars", idA[:31], "", "31 characters"},
		{"33 chars", idA + "0", "", "33 characters"},
		{"all zeros", strings.Repeat("0", 32), "", "all zeros"},
		{"uuid form", "01234567-89ab-cdef-0123-456789abcdef", "", "36 characters"},
		{"not hex", "0123456789abcdef0123456789abcdeg", "", "not hex"},
		{"leading space", " " + idA[1:], "", "not hex"},
		{"empty", "", "", "0 characters"},
		{"uninitialized", "uninitialized\n", "", "characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseID(tt.in)
			if tt.errLike != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errLike) {
					t.Fatalf("ParseID(%q) = %q, %v; want error like %q", tt.in, got, err, tt.errLike)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseID(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewID()
		if _, err := ParseID(id); err != nil {
			t.Fatalf("NewID() = %q: %v", id, err)
		}
		// RFC 4122 version 4, variant 10xx, as sd_id128_randomize sets.
		if id[12] != '4' {
			t.Fatalf("NewID() = %q: version nibble %c, want 4", id, id[12])
		}
		if !strings.ContainsRune("89ab", rune(id[16])) {
			t.Fatalf("NewID() = %q: variant nibble %c, want 8-b", id, id[16])
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestSealedHash(t *testing.T) {
	// sha256 of the 32 ASCII characters of idA, no newline.
	// printf %s 0123456789abcdef0123456789abcdef | sha256sum
	const want = "3eb1bd439947eb762998e566ccc2e099c791118b2f40579cc4f7da2b5061b7f9"
	if got := SealedHash(idA); got != want {
		t.Fatalf("SealedHash(%q) = %q, want %q", idA, got, want)
	}
}

func TestAbbrev(t *testing.T) {
	tests := []struct{ in, want string }{
		{idA, "0123…cdef"},
		{"uninitialized", "uninitialized"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Abbrev(tt.in); got != tt.want {
			t.Errorf("Abbrev(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseSealed(t *testing.T) {
	h1, h2 := SealedHash(idA), SealedHash(idB)
	tests := []struct {
		name, in string
		want     int
		errLike  string
	}{
		{"empty", "", 0, ""},
		{"two", h1 + "\n" + h2 + "\n", 2, ""},
		{"duplicates and blank lines", h1 + "\n\n" + h1 + "\n", 1, ""},
		{"no final newline", h1, 1, ""},
		{"an id, not a hash", idA + "\n", 0, "line 1"},
		{"uppercase", strings.ToUpper(h1) + "\n", 0, "line 1"},
		{"garbage on line 2", h1 + "\nnope\n", 0, "line 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSealed(tt.in)
			if tt.errLike != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errLike) || !strings.Contains(err.Error(), SealedPath) {
					t.Fatalf("parseSealed: err %v, want one naming %s and %q", err, SealedPath, tt.errLike)
				}
				return
			}
			if err != nil || len(got) != tt.want {
				t.Fatalf("parseSealed = %d hashes, %v; want %d", len(got), err, tt.want)
			}
		})
	}
}
