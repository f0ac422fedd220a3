package spec

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// Redacted stands in for a secret in every output nodeprov produces:
// diagnostics and the source lines they quote, plan diffs, reports, the
// last-run record.
const Redacted = "<redacted>"

// SecretKeys are the keys whose values are secrets wherever they appear:
// in the spec (containerd.registries.<host>.auth), in a rendered
// containerd config or hosts.toml (registry auth, an operator's patch) and
// in files quoted by a diff. Compared case-insensitively.
var SecretKeys = []string{"password", "auth", "identitytoken", "identity_token", "token", "registrytoken", "authorization"}

var (
	// urlUserinfo matches the user[:password]@ part of a URL, parseable
	// or not.
	urlUserinfo = lazyRegexp(`(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@"'?#<>]+@`)
	// secretAssign matches `key = value` (TOML), `key: value` (YAML) and
	// `"key": value` (JSON) for a secret key, with a quoted or bare value;
	// a value that opens a table or list is left alone (its own keys are
	// matched one by one).
	secretAssign = lazyRegexp(`(?i)((?:^|[\s{,."'])(?:` + strings.Join(SecretKeys, "|") + `)["']?\s*[=:]\s*)("(?:[^"\\]|\\.)*"?|'[^']*'?|[^\s,{}\[\]][^\s,}\]]*)`)
)

// Redact replaces the secrets in s with Redacted: URL credentials and the
// values of SecretKeys. It works on text of any origin (a YAML line, a
// TOML diff, an error message), so it is applied wherever text leaves
// nodeprov.
func Redact(s string) string {
	s, _ = redactAt(s, -1)
	return s
}

// redactAt is Redact that also moves a byte offset in s (-1: none) to the
// same place in the result, so a caret under a quoted source line still
// points at its column after the line was redacted. An offset inside a
// replaced span moves to the span's start.
func redactAt(s string, off int) (string, int) {
	if s == "" {
		return s, off
	}
	// The expressions backtrack; most text (every action's detail, on
	// every run) holds neither a URL with credentials nor a secret key.
	if strings.Contains(s, "@") {
		s, off = replaceAt(s, off, urlUserinfo(), func(sub []string) string { return sub[1] + Redacted + "@" })
	}
	if !mayNameSecret(s) {
		return s, off
	}
	return replaceAt(s, off, secretAssign(), func(sub []string) string {
		if strings.Contains(sub[2], Redacted) {
			return sub[0]
		}
		return sub[1] + quoteLike(sub[2])
	})
}

// mayNameSecret reports whether s may contain one of SecretKeys in any
// case: text that is not ASCII always may (the expression's case folding
// also matches the Kelvin sign and the long s).
func mayNameSecret(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return true
		}
	}
	lower := strings.ToLower(s)
	for _, k := range SecretKeys {
		if strings.Contains(lower, k) {
			return true
		}
	}
	return false
}

func replaceAt(s string, off int, re *regexp.Regexp, repl func(sub []string) string) (string, int) {
	var b strings.Builder
	last, moved := 0, off
	for _, m := range re.FindAllStringSubmatchIndex(s, -1) {
		sub := make([]string, len(m)/2)
		for i := range sub {
			if m[2*i] >= 0 {
				sub[i] = s[m[2*i]:m[2*i+1]]
			}
		}
		r := repl(sub)
		switch {
		case off >= m[1]:
			moved += len(r) - (m[1] - m[0])
		case off > m[0]:
			// Inside the match: keep the offset within the part the
			// replacement leaves as it was (a key), else move it to
			// where the replacement starts to differ.
			keep := commonPrefix(sub[0], r)
			moved = b.Len() + (m[0] - last) + min(off-m[0], keep)
		}
		b.WriteString(s[last:m[0]])
		b.WriteString(r)
		last = m[1]
	}
	if last == 0 {
		return s, off
	}
	b.WriteString(s[last:])
	return b.String(), moved
}

// quoteLike returns Redacted quoted the way v was.
func quoteLike(v string) string {
	switch {
	case strings.HasPrefix(v, `"`):
		return `"` + Redacted + `"`
	case strings.HasPrefix(v, `'`):
		return `'` + Redacted + `'`
	}
	return Redacted
}

// IsSecretKey reports whether a key (of any case) holds a secret.
func IsSecretKey(k string) bool {
	for _, s := range SecretKeys {
		if strings.EqualFold(k, s) {
			return true
		}
	}
	return false
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
