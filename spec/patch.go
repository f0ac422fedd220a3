package spec

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"go.yaml.in/yaml/v3"
)

// Patch is containerd.patch: an RFC 7396 merge patch over the rendered
// config.toml, written as TOML text or as a YAML mapping. Tables merge
// recursively and any other value replaces; in the YAML form a null value
// deletes the key, which TOML has no way to say.
type Patch struct {
	// TOML is the text form; Map the mapping form. At most one is set.
	TOML string
	Map  map[string]any
}

// IsZero reports an absent patch.
func (p Patch) IsZero() bool { return strings.TrimSpace(p.TOML) == "" && len(p.Map) == 0 }

// Tree returns the patch as a TOML-shaped tree (tables are
// map[string]any, integers int64, nil deletes).
func (p Patch) Tree() (map[string]any, error) {
	if p.Map != nil {
		v, err := tomlValue(p.Map, "")
		if err != nil {
			return nil, err
		}
		return v.(map[string]any), nil
	}
	tree := map[string]any{}
	if strings.TrimSpace(p.TOML) == "" {
		return tree, nil
	}
	if err := toml.Unmarshal([]byte(p.TOML), &tree); err != nil {
		if de, ok := err.(*toml.DecodeError); ok {
			row, col := de.Position()
			return nil, fmt.Errorf("line %d, column %d of the patch: %s", row, col, de.Error())
		}
		return nil, err
	}
	return tree, nil
}

// tomlValue converts a value decoded from YAML into what TOML can hold,
// naming the key of the first value it cannot.
func tomlValue(v any, key string) (any, error) {
	switch x := v.(type) {
	case nil, string, bool, int64, float64:
		return x, nil
	case int:
		return int64(x), nil
	case uint64:
		return int64(x), nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := tomlValue(e, fmt.Sprintf("%s[%d]", key, i))
			if err != nil {
				return nil, err
			}
			if c == nil {
				return nil, fmt.Errorf("%s[%d]: null in a list (TOML has no null; null deletes keys only)", key, i)
			}
			out[i] = c
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			p := k
			if key != "" {
				p = key + "." + k
			}
			c, err := tomlValue(e, p)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: a YAML %T has no TOML form", key, v)
}

// decodePatch fills a Patch from a YAML string (TOML text) or mapping.
func (d *decoder) decodePatch(n *yaml.Node, p *Patch, path string, depth int) {
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!str":
		p.TOML = n.Value
	case n.Kind == yaml.MappingNode:
		var m any
		d.decodeAny(n, reflect.ValueOf(&m).Elem(), path, depth)
		if mm, ok := m.(map[string]any); ok {
			p.Map = mm
		} else if m != nil {
			d.sink.addDecode(d.at(n), path, "a patch mapping needs string keys")
		}
	default:
		d.typeError(n, path, "TOML text or a mapping")
	}
}

// JSONSchema describes Patch in the JSON Schema.
func (Patch) JSONSchema() map[string]any {
	return map[string]any{"type": []string{"string", "object"}}
}
