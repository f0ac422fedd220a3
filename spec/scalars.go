package spec

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// scalar is implemented by spec types that decode from one YAML scalar with
// their own rules. decodeScalar returns a message for the user, or "".
type scalar interface {
	decodeScalar(n *yaml.Node) string
}

// Scalar is a string that may be written as a YAML string or integer
// (sysctl values: `1` and `"1"` mean the same).
type Scalar string

func (s *Scalar) decodeScalar(n *yaml.Node) string {
	switch n.Tag {
	case "!!str", "!!int":
		*s = Scalar(n.Value)
		return ""
	}
	return fmt.Sprintf("expected a string or an integer, got %s %q; quote it", tagName(n.Tag), n.Value)
}

// JSONSchema describes Scalar in the JSON Schema.
func (Scalar) JSONSchema() map[string]any {
	return map[string]any{"type": []string{"string", "integer"}}
}

// Version is a release version, written as a string or (for date-style
// versions such as gVisor's) an integer.
type Version string

func (v *Version) decodeScalar(n *yaml.Node) string {
	switch n.Tag {
	case "!!str", "!!int":
		*v = Version(n.Value)
		return ""
	case "!!float":
		return fmt.Sprintf("version %s is a YAML number; quote it (\"%s\")", n.Value, n.Value)
	}
	return fmt.Sprintf("expected a version string, got %s", tagName(n.Tag))
}

// JSONSchema describes Version in the JSON Schema.
func (Version) JSONSchema() map[string]any {
	return map[string]any{"type": []string{"string", "integer"}}
}

// Mode is a file mode written as an octal string ("0644").
type Mode string

var modePattern = lazyRegexp(`^0?[0-7]{3,4}$`)

func (m *Mode) decodeScalar(n *yaml.Node) string {
	if n.Tag != "!!str" {
		return fmt.Sprintf("file mode must be a quoted octal string such as \"0644\", got %s %s", tagName(n.Tag), n.Value)
	}
	if !modePattern().MatchString(n.Value) {
		return fmt.Sprintf("invalid file mode %q: expected an octal string such as \"0644\"", n.Value)
	}
	*m = Mode(n.Value)
	return ""
}

// Perm returns the mode bits; the zero Mode yields def.
func (m Mode) Perm(def fs.FileMode) fs.FileMode {
	if m == "" {
		return def
	}
	v, err := strconv.ParseUint(string(m), 8, 32)
	if err != nil {
		return def
	}
	return fileMode(uint32(v))
}

// fileMode converts Unix permission bits (including setuid, setgid, sticky)
// to an fs.FileMode.
func fileMode(v uint32) fs.FileMode {
	m := fs.FileMode(v & 0o777)
	if v&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if v&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if v&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// JSONSchema describes Mode in the JSON Schema.
func (Mode) JSONSchema() map[string]any {
	return map[string]any{"type": "string", "pattern": modePattern().String()}
}

// Size is a byte count written as an integer or with a binary suffix
// (Ki, Mi, Gi).
type Size int64

var sizePattern = lazyRegexp(`^([0-9]+)(Ki|Mi|Gi)?$`)

func (s *Size) decodeScalar(n *yaml.Node) string {
	if n.Tag != "!!str" && n.Tag != "!!int" {
		return fmt.Sprintf("expected a size such as 512Mi, got %s", tagName(n.Tag))
	}
	m := sizePattern().FindStringSubmatch(strings.TrimSpace(n.Value))
	if m == nil {
		return fmt.Sprintf("invalid size %q: expected bytes or a number with Ki, Mi or Gi", n.Value)
	}
	v, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return fmt.Sprintf("invalid size %q: %v", n.Value, err)
	}
	shift := map[string]uint{"": 0, "Ki": 10, "Mi": 20, "Gi": 30}[m[2]]
	if v > (1<<62)>>shift {
		return fmt.Sprintf("size %q is too large", n.Value)
	}
	*s = Size(v << shift)
	return ""
}

// JSONSchema describes Size in the JSON Schema.
func (Size) JSONSchema() map[string]any {
	return map[string]any{"type": []string{"string", "integer"}, "pattern": sizePattern().String()}
}

// Quantity is a Kubernetes resource quantity (250m, 0.5, 160Mi), written
// as a string or, as in Kubernetes manifests, a plain YAML number. It is
// kept as written; validate checks its syntax.
type Quantity string

func (q *Quantity) decodeScalar(n *yaml.Node) string {
	switch n.Tag {
	case "!!str", "!!int", "!!float":
		*q = Quantity(n.Value)
		return ""
	}
	return fmt.Sprintf("expected a quantity such as 250m or 160Mi, got %s", tagName(n.Tag))
}

// JSONSchema describes Quantity in the JSON Schema (its pattern comes from
// the field's pattern tag; for numbers, the minimum stands in for it).
func (Quantity) JSONSchema() map[string]any {
	return map[string]any{"type": []string{"string", "number"}, "minimum": 0}
}

func tagName(tag string) string {
	switch tag {
	case "!!str":
		return "a string"
	case "!!int":
		return "an integer"
	case "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	case "!!null":
		return "null"
	case "!!map":
		return "a mapping"
	case "!!seq":
		return "a list"
	case "!!binary":
		return "binary data"
	case "!!timestamp":
		return "a timestamp"
	}
	return strings.TrimPrefix(tag, "!!")
}
