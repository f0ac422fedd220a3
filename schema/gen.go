package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/nodeprov/nodeprov/spec"
)

const (
	// ID is the $id of the generated schema.
	ID = "https://nodeprov.dev/schema/nodeprov.schema.json"
	// Draft is the JSON Schema dialect of the generated schema.
	Draft = "https://json-schema.org/draft/2020-12/schema"

	title       = "nodeprov node spec"
	description = "Declarative node spec for nodeprov (apiVersion " + spec.APIVersion +
		", kind " + spec.KindNode + "). Unknown keys are errors. " +
		"Generated from the Go types in spec/; do not edit."
)

// schemaer is implemented by spec types that describe themselves
// (spec.Scalar, spec.Version, spec.Mode, spec.Size).
type schemaer interface {
	JSONSchema() map[string]any
}

var schemaerType = reflect.TypeFor[schemaer]()

// Generate returns the JSON Schema of spec.Node: deterministic, indented
// with two spaces, ending in a newline.
func Generate() ([]byte, error) {
	b, err := build()
	if err != nil {
		return nil, err
	}
	return encode(b.document())
}

func encode(doc *document) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // descriptions contain <host>, & and such
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil // Encode ends with a newline
}

// object is the schema of one named struct type, with its keys in
// declaration order (JSON objects lose that order; the docs keep it).
type object struct {
	name   string
	typ    reflect.Type
	schema map[string]any
	fields []string
	// usedIn lists where the type is referenced, as "Parent.key".
	usedIn []ref
}

type ref struct{ parent, key string }

// builder walks the spec types once. objects[0] is the root (spec.Node);
// the others are $defs, in the order they were first reached.
type builder struct {
	objects []*object
	byType  map[reflect.Type]*object
	byName  map[string]*object
	// current is the object whose fields are being built (for usedIn).
	current *object
	key     string
}

func build() (*builder, error) {
	b := &builder{byType: map[reflect.Type]*object{}, byName: map[string]*object{}}
	if _, err := b.structRef(reflect.TypeFor[spec.Node]()); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *builder) root() *object { return b.objects[0] }

func (b *builder) defs() []*object { return b.objects[1:] }

// document is the top level of the file. A struct, not a map, so that
// $schema and $id come first and $defs last; below it, keys are sorted.
type document struct {
	Schema               string         `json:"$schema"`
	ID                   string         `json:"$id"`
	Title                string         `json:"title"`
	Description          string         `json:"description"`
	Type                 any            `json:"type"`
	Required             any            `json:"required,omitempty"`
	Properties           any            `json:"properties"`
	AdditionalProperties any            `json:"additionalProperties"`
	Defs                 map[string]any `json:"$defs,omitempty"`
}

// document assembles the root schema: spec.Node itself plus $defs.
func (b *builder) document() *document {
	r := b.root().schema
	doc := &document{
		Schema:               Draft,
		ID:                   ID,
		Title:                title,
		Description:          description,
		Type:                 r["type"],
		Required:             r["required"],
		Properties:           r["properties"],
		AdditionalProperties: r["additionalProperties"],
	}
	if defs := b.defs(); len(defs) > 0 {
		doc.Defs = make(map[string]any, len(defs))
		for _, o := range defs {
			doc.Defs[o.name] = o.schema
		}
	}
	return doc
}

// refTo is the JSON pointer of a named struct type's schema.
func (b *builder) refTo(o *object) string {
	if o == b.root() {
		return "#"
	}
	return "#/$defs/" + o.name
}

// structRef returns {"$ref": ...} for a named struct type, building its
// schema the first time.
func (b *builder) structRef(t reflect.Type) (map[string]any, error) {
	if t.Name() == "" {
		return nil, fmt.Errorf("anonymous struct %s: give it a name in spec", t)
	}
	o, ok := b.byType[t]
	if !ok {
		if other, dup := b.byName[t.Name()]; dup {
			return nil, fmt.Errorf("two types named %s: %s and %s", t.Name(), other.typ, t)
		}
		o = &object{name: t.Name(), typ: t}
		b.byType[t], b.byName[t.Name()] = o, o
		b.objects = append(b.objects, o)

		saved, savedKey := b.current, b.key
		b.current = o
		props := map[string]any{}
		var required []string
		if err := b.addFields(o, t, props, &required); err != nil {
			return nil, err
		}
		b.current, b.key = saved, savedKey

		o.schema = map[string]any{
			"type":                 "object",
			"properties":           props,
			"additionalProperties": false,
		}
		if len(required) > 0 {
			o.schema["required"] = required
		}
	}
	if b.current != nil {
		o.usedIn = append(o.usedIn, ref{b.current.name, b.key})
	}
	return map[string]any{"$ref": b.refTo(o)}, nil
}

// addFields adds the keys of struct t to props in declaration order,
// flattening `yaml:",inline"` fields the way spec's decoder does.
func (b *builder) addFields(o *object, t reflect.Type, props map[string]any, required *[]string) error {
	for i := range t.NumField() {
		sf := t.Field(i)
		name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if opts == "inline" {
			if sf.Type.Kind() != reflect.Struct {
				return fmt.Errorf("%s.%s: inline field must be a struct, not %s", t.Name(), sf.Name, sf.Type)
			}
			if err := b.addFields(o, sf.Type, props, required); err != nil {
				return err
			}
			continue
		}
		if name == "" || name == "-" || !sf.IsExported() {
			continue
		}
		if _, dup := props[name]; dup {
			return fmt.Errorf("%s: key %q declared twice", o.name, name)
		}
		b.key = name
		s, err := b.fieldSchema(sf)
		if err != nil {
			return fmt.Errorf("%s.%s: %w", t.Name(), sf.Name, err)
		}
		props[name] = s
		o.fields = append(o.fields, name)
		if sf.Tag.Get("required") == "true" {
			*required = append(*required, name)
		}
	}
	return nil
}

// fieldSchema is the schema of one struct field: its type's schema plus
// what the desc, enum and default tags say.
func (b *builder) fieldSchema(sf reflect.StructField) (map[string]any, error) {
	s, err := b.typeSchema(sf.Type)
	if err != nil {
		return nil, err
	}
	if d := sf.Tag.Get("desc"); d != "" {
		s["description"] = d
	}
	var enum []any
	if tag, ok := sf.Tag.Lookup("enum"); ok {
		// enum on a list constrains its items.
		target, et := s, sf.Type
		if et.Kind() == reflect.Slice {
			target, _ = s["items"].(map[string]any)
			et = et.Elem()
		}
		if target == nil || target["$ref"] != nil {
			return nil, fmt.Errorf("enum tag on %s", sf.Type)
		}
		for _, alt := range strings.Split(tag, "|") {
			v, err := tagValue(et, alt)
			if err != nil {
				return nil, fmt.Errorf("enum value %q: %w", alt, err)
			}
			enum = append(enum, v)
		}
		target["enum"] = enum
	}
	if name, ok := sf.Tag.Lookup("pattern"); ok {
		pat, known := spec.Pattern(name)
		if !known {
			return nil, fmt.Errorf("pattern tag %q: spec.Pattern knows no such pattern", name)
		}
		// On a list the pattern constrains its items, on a map its values.
		target := s
		switch sf.Type.Kind() {
		case reflect.Slice:
			target, _ = s["items"].(map[string]any)
		case reflect.Map:
			target, _ = s["additionalProperties"].(map[string]any)
		}
		if target == nil || target["$ref"] != nil {
			return nil, fmt.Errorf("pattern tag on %s", sf.Type)
		}
		target["pattern"] = pat
	}
	if name, ok := sf.Tag.Lookup("keyPattern"); ok {
		pat, known := spec.Pattern(name)
		if !known || sf.Type.Kind() != reflect.Map {
			return nil, fmt.Errorf("keyPattern tag %q on %s", name, sf.Type)
		}
		s["propertyNames"] = map[string]any{"pattern": pat}
	}
	if tag, ok := sf.Tag.Lookup("default"); ok {
		v, err := tagValue(sf.Type, tag)
		if err != nil {
			return nil, fmt.Errorf("default %q: %w", tag, err)
		}
		if enum != nil && !slices.Contains(enum, v) {
			return nil, fmt.Errorf("default %q is not one of the enum values", tag)
		}
		s["default"] = v
	}
	return s, nil
}

// tagValue converts a tag's text to a JSON value of type t: booleans and
// integers become JSON booleans and numbers; everything else stays a string
// (including self-describing types such as spec.Size, which accept strings).
func tagValue(t reflect.Type, text string) (any, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if implementsSchemaer(t) {
		return text, nil
	}
	switch t.Kind() {
	case reflect.Bool:
		return strconv.ParseBool(text)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.ParseInt(text, 10, 64)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.ParseUint(text, 10, 64)
	case reflect.String:
		return text, nil
	}
	return nil, fmt.Errorf("no tag values for %s", t)
}

func implementsSchemaer(t reflect.Type) bool {
	return t.Implements(schemaerType) || reflect.PointerTo(t).Implements(schemaerType)
}

// typeSchema maps a Go type to a fresh schema map (callers may add keys).
func (b *builder) typeSchema(t reflect.Type) (map[string]any, error) {
	if t.Kind() != reflect.Pointer && implementsSchemaer(t) {
		src := reflect.New(t).Interface().(schemaer).JSONSchema()
		s := make(map[string]any, len(src))
		for k, v := range src {
			s[k] = v
		}
		return s, nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return b.typeSchema(t.Elem())
	case reflect.String:
		return map[string]any{"type": "string"}, nil
	case reflect.Bool:
		return map[string]any{"type": "boolean"}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return map[string]any{"type": "integer"}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer", "minimum": 0}, nil
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}, nil
	case reflect.Slice, reflect.Array:
		items, err := b.typeSchema(t.Elem())
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "array", "items": items}, nil
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return nil, fmt.Errorf("map key %s: only string keys are supported", t.Key())
		}
		vals, err := b.typeSchema(t.Elem())
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "object", "additionalProperties": vals}, nil
	case reflect.Interface:
		if t.NumMethod() != 0 {
			return nil, fmt.Errorf("interface %s: only any is supported", t)
		}
		return map[string]any{}, nil // free-form
	case reflect.Struct:
		return b.structRef(t)
	}
	return nil, fmt.Errorf("unsupported type %s", t)
}
