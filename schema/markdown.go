package schema

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/nodeprov/nodeprov/spec"
)

// Markdown renders a reference of the spec from the generated schema: one
// section per object (the document root first, then every $defs entry in the
// order the root reaches it), each with a table of its keys in the order
// they are declared in package spec.
func Markdown() (string, error) {
	b, err := build()
	if err != nil {
		return "", err
	}
	// Render from the schema as published (after a JSON round trip), so the
	// docs say exactly what the file says; reflection only supplies order.
	js, err := encode(b.document())
	if err != nil {
		return "", err
	}
	var doc map[string]any
	if err := json.Unmarshal(js, &doc); err != nil {
		return "", err
	}
	defs, _ := doc["$defs"].(map[string]any)

	var w strings.Builder
	w.WriteString("# nodeprov spec reference\n\n")
	w.WriteString("<!-- Generated from the Go types in spec/ by the schema package; do not edit. -->\n\n")
	fmt.Fprintf(&w, "A spec is one YAML document with `apiVersion: %s` and `kind: %s`. "+
		"Unknown keys are errors. The same information is published as a JSON Schema "+
		"(`%s`) for editors.\n", spec.APIVersion, spec.KindNode, ID)

	for i, o := range b.objects {
		s := doc
		if i > 0 {
			s, _ = defs[o.name].(map[string]any)
			if s == nil {
				return "", fmt.Errorf("$defs has no %s", o.name)
			}
		}
		if err := writeSection(&w, o, s, i == 0); err != nil {
			return "", err
		}
	}
	return w.String(), nil
}

func writeSection(w *strings.Builder, o *object, s map[string]any, root bool) error {
	fmt.Fprintf(w, "\n## %s\n\n", o.name)
	if root {
		w.WriteString("The document root.\n\n")
	} else if len(o.usedIn) > 0 {
		w.WriteString("Used in:")
		for i, u := range o.usedIn {
			if i > 0 {
				w.WriteString(",")
			}
			fmt.Fprintf(w, " [%s](#%s) `%s`", u.parent, anchor(u.parent), u.key)
		}
		w.WriteString(".\n\n")
	}
	props, _ := s["properties"].(map[string]any)
	required := map[string]bool{}
	if r, ok := s["required"].([]any); ok {
		for _, k := range r {
			if k, ok := k.(string); ok {
				required[k] = true
			}
		}
	}
	w.WriteString("| field | type | default | description |\n")
	w.WriteString("|---|---|---|---|\n")
	for _, name := range o.fields {
		p, ok := props[name].(map[string]any)
		if !ok {
			return fmt.Errorf("%s: no property %s", o.name, name)
		}
		field := "`" + name + "`"
		if required[name] {
			field += " (required)"
		}
		def := ""
		if v, ok := p["default"]; ok {
			def = "`" + escapeCell(jsonText(v)) + "`"
		}
		desc, _ := p["description"].(string)
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", field, typeText(p), def, escapeText(desc))
	}
	return nil
}

// typeText describes a property schema in a few words: string, boolean,
// list of X, map of X, [Name](#name) for objects, enum values after a colon
// and patterns in code.
func typeText(s map[string]any) string {
	if r, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(r, "#/$defs/")
		if r == "#" {
			name = spec.KindNode
		}
		return fmt.Sprintf("[%s](#%s)", name, anchor(name))
	}
	var t string
	switch v := s["type"].(type) {
	case string:
		t = v
	case []any:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = fmt.Sprint(x)
		}
		t = strings.Join(parts, " or ")
	case nil:
		t = "any"
	}
	switch t {
	case "array":
		items, _ := s["items"].(map[string]any)
		t = "list of " + typeText(items)
	case "object":
		switch ap := s["additionalProperties"].(type) {
		case map[string]any:
			t = "map of " + typeText(ap)
		case bool:
			if ap {
				t = "map of any"
			}
		}
	}
	if p, ok := s["pattern"].(string); ok {
		t += " matching `" + escapeCell(p) + "`"
	}
	if e, ok := s["enum"].([]any); ok {
		vals := make([]string, len(e))
		for i, v := range e {
			if str, ok := v.(string); ok && str != "" {
				vals[i] = escapeText(str)
			} else {
				b, _ := json.Marshal(v) // "" and non-strings
				vals[i] = "`" + escapeCell(string(b)) + "`"
			}
		}
		t += ": " + strings.Join(vals, ", ")
	}
	return t
}

// anchor is the GitHub heading anchor of a section named by a type name.
func anchor(name string) string { return strings.ToLower(name) }

func jsonText(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// escapeCell makes text safe inside a table cell's code span: a pipe still
// ends the cell there unless escaped.
func escapeCell(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\n", " "), "|", `\|`)
}

// escapeText makes prose safe in a table cell: no line breaks, no cell
// separators, no accidental HTML (certs.d/<host>) or emphasis.
var textEscaper = strings.NewReplacer(
	"\n", " ",
	`\`, `\\`,
	"|", `\|`,
	"<", `\<`,
	"*", `\*`,
	"_", `\_`,
	"`", "\\`",
)

func escapeText(s string) string { return textEscaper.Replace(s) }
