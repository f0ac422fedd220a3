package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

func TestSchemaUpToDate(t *testing.T) {
	got, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, jsonSchema) {
		t.Fatalf("schema/nodeprov.schema.json is out of date with package spec (generated %d bytes, embedded %d); run `go generate ./schema` and commit the result", len(got), len(jsonSchema))
	}
}

func TestGenerateDeterministic(t *testing.T) {
	a, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		b, err := Generate()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatal("Generate is not deterministic")
		}
	}
	if !bytes.HasSuffix(a, []byte("}\n")) || bytes.HasSuffix(a, []byte("\n\n")) {
		t.Error("output does not end in exactly one newline")
	}
	if !bytes.HasPrefix(a, []byte("{\n  \"$schema\": ")) {
		t.Errorf("output does not start with a 2-space indented $schema: %.40q", a)
	}
	if bytes.Contains(a, []byte(`\u003c`)) {
		t.Error("HTML-escaped characters in output")
	}
}

func TestJSONIsCopy(t *testing.T) {
	a := JSON()
	if !bytes.Equal(a, jsonSchema) {
		t.Fatal("JSON() differs from the embedded file")
	}
	a[0] = 'X'
	if JSON()[0] != '{' {
		t.Fatal("JSON() returns the embedded slice, not a copy")
	}
}

// load parses the embedded schema.
func load(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(jsonSchema, &doc); err != nil {
		t.Fatalf("embedded schema is not valid JSON: %v", err)
	}
	return doc
}

// resolve follows $ref (only local #/$defs/ and # refs) until a schema
// without one.
func resolve(t *testing.T, doc, s map[string]any) map[string]any {
	t.Helper()
	for range 10 {
		r, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		if r == "#" {
			s = doc
			continue
		}
		name, ok := strings.CutPrefix(r, "#/$defs/")
		if !ok {
			t.Fatalf("non-local $ref %q", r)
		}
		next, ok := doc["$defs"].(map[string]any)[name].(map[string]any)
		if !ok {
			t.Fatalf("$ref %q does not resolve", r)
		}
		s = next
	}
	t.Fatal("$ref loop")
	return nil
}

// at walks a path of property names from the root; "[]" steps into array
// items and "{}" into map values.
func at(t *testing.T, doc map[string]any, path ...string) map[string]any {
	t.Helper()
	s := doc
	for i, p := range path {
		s = resolve(t, doc, s)
		var next any
		switch p {
		case "[]":
			next = s["items"]
		case "{}":
			next = s["additionalProperties"]
		default:
			props, _ := s["properties"].(map[string]any)
			next = props[p]
		}
		m, ok := next.(map[string]any)
		if !ok {
			t.Fatalf("no schema at %s", strings.Join(path[:i+1], "."))
		}
		s = m
	}
	return s
}

func TestSchemaShape(t *testing.T) {
	doc := load(t)
	if doc["$schema"] != Draft || doc["$id"] != ID {
		t.Errorf("$schema/$id = %v / %v", doc["$schema"], doc["$id"])
	}
	for _, k := range []string{"title", "description"} {
		if s, _ := doc[k].(string); s == "" {
			t.Errorf("no %s", k)
		}
	}
	if doc["type"] != "object" || doc["additionalProperties"] != false {
		t.Errorf("root: type %v, additionalProperties %v", doc["type"], doc["additionalProperties"])
	}
	req, _ := doc["required"].([]any)
	for _, k := range []any{"apiVersion", "kind"} {
		if !slices.Contains(req, k) {
			t.Errorf("root required %v lacks %v", req, k)
		}
	}
	if e := at(t, doc, "apiVersion")["enum"]; !reflect.DeepEqual(e, []any{"nodeprov/v1alpha1"}) {
		t.Errorf("apiVersion enum = %v", e)
	}

	kernel := resolve(t, doc, at(t, doc, "kernel"))
	if kernel["type"] != "object" || kernel["additionalProperties"] != false {
		t.Errorf("kernel: type %v, additionalProperties %v", kernel["type"], kernel["additionalProperties"])
	}
	if got := at(t, doc, "kernel", "sysctl", "{}")["type"]; !reflect.DeepEqual(got, []any{"string", "integer"}) {
		t.Errorf("kernel.sysctl values: type %v", got)
	}

	mode := resolve(t, doc, at(t, doc, "files", "[]", "mode"))
	if mode["type"] != "string" {
		t.Errorf("files[].mode type = %v", mode["type"])
	}
	if p, _ := mode["pattern"].(string); p == "" {
		t.Error("files[].mode has no pattern")
	}

	cg := at(t, doc, "containerd", "cgroupDriver")
	if !reflect.DeepEqual(cg["enum"], []any{"auto", "systemd", "cgroupfs"}) || cg["default"] != "auto" || cg["type"] != "string" {
		t.Errorf("containerd.cgroupDriver = %v", cg)
	}

	if got := at(t, doc, "units", "[]", "enabled")["type"]; got != "boolean" {
		t.Errorf("units[].enabled type = %v", got)
	}
	if _, ok := at(t, doc, "units", "[]", "enabled")["default"]; ok {
		t.Error("units[].enabled has a default; absent means leave as is")
	}
	if got := at(t, doc, "components", "gvisor", "shim")["default"]; got != true {
		t.Errorf("components.gvisor.shim default = %#v, want JSON true", got)
	}
	if got := at(t, doc, "files", "[]", "encoding")["enum"]; !reflect.DeepEqual(got, []any{"", "base64", "gzip+base64"}) {
		t.Errorf("files[].encoding enum = %v", got)
	}
	if got := at(t, doc, "downloads", "[]", "extract", "strip")["type"]; got != "integer" {
		t.Errorf("downloads[].extract.strip type = %v", got)
	}
	if got := at(t, doc, "containerd", "runtimes", "{}", "options"); got["type"] != "object" || !reflect.DeepEqual(got["additionalProperties"], map[string]any{}) {
		t.Errorf("runtime options are not free-form: %v", got)
	}

	// spec.Release is inlined: its keys are in every component, and no
	// Release definition exists.
	for _, c := range []string{"containerd", "runc", "cni", "gvisor", "crictl"} {
		comp := resolve(t, doc, at(t, doc, "components", c))
		at(t, doc, "components", c, "version")
		at(t, doc, "components", c, "baseURL")
		if r, _ := comp["required"].([]any); !slices.Contains(r, any("version")) {
			t.Errorf("components.%s required = %v", c, r)
		}
	}
	if _, ok := doc["$defs"].(map[string]any)["Release"]; ok {
		t.Error("inline struct Release has its own $defs entry")
	}
}

// walk calls fn for every schema object in v with its JSON pointer-ish path.
func walk(v any, path string, fn func(path string, m map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		fn(path, v)
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			walk(v[k], path+"/"+k, fn)
		}
	case []any:
		for i, x := range v {
			walk(x, fmt.Sprintf("%s/%d", path, i), fn)
		}
	}
}

func TestRefsResolve(t *testing.T) {
	doc := load(t)
	defs, _ := doc["$defs"].(map[string]any)
	if len(defs) == 0 {
		t.Fatal("no $defs")
	}
	used := map[string]bool{}
	n := 0
	walk(doc, "#", func(path string, m map[string]any) {
		r, ok := m["$ref"]
		if !ok {
			return
		}
		n++
		s, _ := r.(string)
		name, ok := strings.CutPrefix(s, "#/$defs/")
		if !ok {
			t.Errorf("%s: $ref %v is not #/$defs/<name>", path, r)
			return
		}
		if _, ok := defs[name].(map[string]any); !ok {
			t.Errorf("%s: $ref %q has no $defs entry", path, s)
		}
		used[name] = true
	})
	if n == 0 {
		t.Fatal("no $ref found")
	}
	for name, d := range defs {
		if !used[name] {
			t.Errorf("$defs/%s is never referenced", name)
		}
		if m, _ := d.(map[string]any); m["additionalProperties"] != false {
			t.Errorf("$defs/%s: additionalProperties = %v, want false", name, m["additionalProperties"])
		}
	}
}

func TestEveryPropertyHasDescription(t *testing.T) {
	doc := load(t)
	n := 0
	walk(doc, "#", func(path string, m map[string]any) {
		props, ok := m["properties"].(map[string]any)
		if !ok || strings.HasSuffix(path, "/properties") {
			return // a property literally named "properties" is not a schema's properties
		}
		for name, p := range props {
			n++
			if d, _ := p.(map[string]any)["description"].(string); strings.TrimSpace(d) == "" {
				t.Errorf("%s/properties/%s has no description (add a desc tag in spec)", path, name)
			}
		}
	})
	if n < 50 {
		t.Errorf("only %d properties checked", n)
	}
}
