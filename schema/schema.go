// Package schema publishes the JSON Schema of the nodeprov spec, and the
// spec reference rendered from it.
//
// nodeprov.schema.json and REFERENCE.md are generated from the Go types in
// package spec (their yaml, desc, enum, default and required tags) by
// `go generate ./schema`; do not edit them by hand. Tests fail when a
// committed file is stale.
// The file is embedded so that `nodeprov schema` can print it, and editors
// find it through the yaml-language-server comment at the top of a spec.
package schema

import _ "embed"

//go:generate go run ./internal/gen -o nodeprov.schema.json -md REFERENCE.md

//go:embed nodeprov.schema.json
var jsonSchema []byte

// JSON returns the committed JSON Schema (a copy; callers may modify it).
func JSON() []byte {
	return append([]byte(nil), jsonSchema...)
}
