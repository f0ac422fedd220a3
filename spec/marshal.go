package spec

import (
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Marshal renders a spec as YAML in declaration order, leaving out values
// that are unset, so `plan --expanded` shows exactly what will be applied,
// defaults included. Secret fields (tagged secret:"true") and whatever
// Redact recognises in free-form text are shown as Redacted.
func Marshal(n *Node) ([]byte, error) {
	node := toNode(reflect.ValueOf(n).Elem())
	if node == nil {
		node = &yaml.Node{Kind: yaml.MappingNode}
	}
	out, err := yaml.Marshal(node)
	if err != nil {
		return nil, err
	}
	// Free-form text (a TOML patch, runtime options) can hold secrets too.
	return []byte(Redact(string(out))), nil
}

func toNode(v reflect.Value) *yaml.Node {
	if p, ok := asPatch(v); ok {
		switch {
		case p.Map != nil:
			return toNode(reflect.ValueOf(p.Map))
		case p.TOML != "":
			return toNode(reflect.ValueOf(p.TOML))
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return toNode(v.Elem())
	case reflect.Struct:
		m := &yaml.Node{Kind: yaml.MappingNode}
		appendFields(m, v)
		if len(m.Content) == 0 {
			return nil
		}
		return m
	case reflect.Slice:
		if v.Len() == 0 {
			return nil
		}
		s := &yaml.Node{Kind: yaml.SequenceNode}
		for i := 0; i < v.Len(); i++ {
			if c := toNode(v.Index(i)); c != nil {
				s.Content = append(s.Content, c)
			} else {
				s.Content = append(s.Content, &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle})
			}
		}
		return s
	case reflect.Map:
		if v.Len() == 0 {
			return nil
		}
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		sort.Strings(keys)
		m := &yaml.Node{Kind: yaml.MappingNode}
		for _, k := range keys {
			c := toNode(v.MapIndex(reflect.ValueOf(k).Convert(v.Type().Key())))
			if c == nil {
				c = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
			}
			m.Content = append(m.Content, str(k), c)
		}
		return m
	case reflect.String:
		if v.String() == "" {
			return nil
		}
		n := str(v.String())
		if strings.Contains(v.String(), "\n") {
			n.Style = yaml.LiteralStyle
		}
		return n
	case reflect.Bool:
		if !v.Bool() {
			return nil
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"}
	case reflect.Int, reflect.Int64:
		if v.Int() == 0 {
			return nil
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(v.Int(), 10)}
	}
	var n yaml.Node
	if err := n.Encode(v.Interface()); err != nil {
		return nil
	}
	return &n
}

func appendFields(m *yaml.Node, v reflect.Value) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name, opts, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if opts == "inline" {
			appendFields(m, v.Field(i))
			continue
		}
		f := v.Field(i)
		var c *yaml.Node
		if t.Field(i).Tag.Get("secret") == "true" && f.Kind() == reflect.String {
			if f.String() != "" {
				m.Content = append(m.Content, str(name), str(Redacted))
			}
			continue
		}
		if f.Kind() == reflect.Pointer && !f.IsNil() && f.Elem().Kind() == reflect.Bool {
			c = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(f.Elem().Bool())}
		} else {
			c = toNode(f)
		}
		if c != nil {
			m.Content = append(m.Content, str(name), c)
		}
	}
}

func str(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

func asPatch(v reflect.Value) (Patch, bool) {
	if !v.IsValid() || v.Type() != patchType {
		return Patch{}, false
	}
	return v.Interface().(Patch), true
}
