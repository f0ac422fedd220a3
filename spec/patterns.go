package spec

import (
	"regexp"
	"sync"

	"github.com/distribution/reference"
)

// Pattern returns, by name, the regular expression a kind of value must
// match. The validator compiles its checks from it, and the JSON Schema
// carries the same expressions (the struct tags pattern:"NAME" and, for a
// map's keys, keyPattern:"NAME"), so an editor that validates specs with
// the schema flags what `nodeprov validate` flags. The expressions are
// written in the common subset of Go's RE2 and ECMA-262.
func Pattern(name string) (string, bool) {
	switch name {
	case "module":
		return `^[A-Za-z0-9_-]{1,56}$`, true
	case "sysctl-key":
		return `^[a-z0-9_]+(\.[A-Za-z0-9_/@:+-]+)+$`, true
	case "sha256":
		return `^[0-9a-f]{64}$`, true
	case "sha512":
		return `^[0-9a-f]{128}$`, true
	case "machine-id":
		return `^[0-9a-f]{32}$`, true
	case "dns-label":
		return `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`, true
	case "dns-subdomain":
		// An RFC 1123 subdomain, the form of a Kubernetes Node name (at
		// most 253 characters, which validate checks; the schema cannot).
		return `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`, true
	case "unit":
		return `^[A-Za-z0-9:_.\\@-]+\.(service|socket|timer|mount|automount|target|path|slice|scope|swap|device)$`, true
	case "url":
		// http(s) with a host and no credentials, or a file URL.
		return `^(https?://[^/\s@]+|file:///)\S*$`, true
	case "image":
		// The distribution reference grammar containerd parses images with.
		return "^" + reference.ReferenceRegexp.String() + "$", true
	case "quantity":
		// A Kubernetes resource quantity that is not negative: a decimal
		// number with an SI suffix (n, u, m, k, M, G, T, P, E), a binary
		// one (Ki … Ei) or a decimal exponent (e3, E-2).
		return `^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$`, true
	case "label-key":
		// A Kubernetes label key: [prefix/]name, the prefix a DNS
		// subdomain (at most 253 characters, which validate checks; the
		// schema cannot), the name at most 63 characters.
		return `^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`, true
	case "label-value":
		// A Kubernetes label value: empty, or at most 63 characters.
		return `^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$`, true
	}
	return "", false
}

// mustPattern is Pattern for names this package itself uses.
func mustPattern(name string) string {
	p, ok := Pattern(name)
	if !ok {
		panic("spec: no pattern " + name)
	}
	return p
}

// lazyRegexp compiles pattern on first use. Most of the package's
// expressions serve only some specs, or only error messages, and every
// nodeprov command starts the package: compiling them all at start-up cost
// a warm re-apply more than its own work on some of them.
func lazyRegexp(pattern string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(pattern) })
}
