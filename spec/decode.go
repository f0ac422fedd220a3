package spec

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Limits that keep a hostile spec from exhausting memory or stack.
const (
	// MaxSpecSize is the largest spec file accepted.
	MaxSpecSize = 16 << 20
	maxDepth    = 64
	// maxNodes bounds the nodes visited, which bounds alias expansion.
	maxNodes = 200_000
)

// Document is a decoded, validated spec with defaults applied.
type Document struct {
	// File is the name used in diagnostics ("-" is shown as <stdin>).
	File string
	// Source is the file's bytes.
	Source []byte
	// Digest is "sha256:<hex>" of Source.
	Digest string
	// Spec is the decoded spec.
	Spec   *Node
	pos    map[string]Pos
	keyPos map[string]Pos
}

// Pos returns the source position of the value at a key path such as
// `files[2].mode`, or the zero Pos when the path was not in the file.
func (d *Document) Pos(path string) Pos { return d.pos[path] }

// Has reports whether the spec file itself sets the key path (rather than
// a default filling it in). Paths are written as in diagnostics:
// `containerd.runtimes.gvisor`, `containerd.registries["docker.io"]`
// (KeyPath builds them).
func (d *Document) Has(path string) bool {
	_, ok := d.pos[path]
	return ok
}

// KeyPath is the diagnostic path of key under parent.
func KeyPath(parent, key string) string { return keyPath(parent, key) }

// Diagnostic builds a diagnostic for a key path of this document, for
// callers outside spec that find a problem with a value later.
func (d *Document) Diagnostic(path, format string, args ...any) Diagnostic {
	p := d.pos[path]
	return Diagnostic{File: d.File, Line: p.Line, Column: p.Column, Path: path, Message: fmt.Sprintf(format, args...)}
}

// Load decodes, validates and defaults a spec. On failure the error is a
// *Diagnostics holding every problem in the file.
func Load(file string, src []byte) (*Document, error) {
	doc, sink, parsed := decode(file, src)
	if parsed {
		// Validate what did decode too, so one run reports every problem.
		validate(doc, sink)
	}
	if err := sink.result(src); err != nil {
		return nil, err
	}
	applyDefaults(doc.Spec)
	return doc, nil
}

// Decode parses a spec strictly (unknown keys, wrong types and duplicate keys
// are errors) without validating values or applying defaults.
func Decode(file string, src []byte) (*Document, error) {
	doc, sink, _ := decode(file, src)
	if err := sink.result(src); err != nil {
		return nil, err
	}
	return doc, nil
}

func decode(file string, src []byte) (*Document, *diagSink, bool) {
	if file == "-" || file == "" {
		file = "<stdin>"
	}
	doc := newDocument(file, src)
	sink := &diagSink{file: doc.File}
	root, ok := parseYAML(src, sink)
	if ok {
		decodeRoot(doc, sink, root, nil)
	}
	return doc, sink, ok
}

// deref follows aliases to the node they name.
func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// newDocument is an empty document for file's src.
func newDocument(file string, src []byte) *Document {
	if file == "-" || file == "" {
		file = "<stdin>"
	}
	sum := sha256.Sum256(src)
	return &Document{
		File: file, Source: src, Spec: &Node{},
		Digest: "sha256:" + hex.EncodeToString(sum[:]),
		pos:    map[string]Pos{},
		keyPos: map[string]Pos{},
	}
}

// decodeRoot decodes a parsed spec into doc; origin names the files of
// nodes from a layered spec's fragments.
func decodeRoot(doc *Document, sink *diagSink, root *yaml.Node, origin map[*yaml.Node]string) {
	d := &decoder{sink: sink, pos: doc.pos, keyPos: doc.keyPos, budget: maxNodes, fields: map[reflect.Type][]field{}, origin: origin}
	d.decode(root, reflect.ValueOf(doc.Spec).Elem(), "", 0)
}

var yamlLine = lazyRegexp(`^yaml: line (\d+): (.*)$`)

// parseYAML parses exactly one YAML document into a node tree.
func parseYAML(src []byte, sink *diagSink) (*yaml.Node, bool) {
	if len(src) > MaxSpecSize {
		sink.add(Pos{Line: 1, Column: 1}, "", "spec is %d bytes; the limit is %d", len(src), MaxSpecSize)
		return nil, false
	}
	if !utf8.Valid(src) {
		sink.add(offsetPos(src, firstInvalidUTF8(src)), "", "spec is not valid UTF-8")
		return nil, false
	}
	if i := bytes.IndexByte(src, 0); i >= 0 {
		sink.add(offsetPos(src, i), "", "spec contains a NUL byte")
		return nil, false
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			sink.add(Pos{Line: 1, Column: 1}, "", "spec is empty: expected a mapping starting with apiVersion: %s", APIVersion)
		} else {
			sink.add(yamlErrorPos(err), "", "%s", yamlErrorText(err))
		}
		return nil, false
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		sink.add(Pos{Line: extra.Line, Column: extra.Column}, "", "spec holds more than one YAML document; put one node spec per file")
		return nil, false
	} else if !errors.Is(err, io.EOF) {
		sink.add(yamlErrorPos(err), "", "%s", yamlErrorText(err))
		return nil, false
	}
	n := &root
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			sink.add(Pos{Line: 1, Column: 1}, "", "spec is empty: expected a mapping starting with apiVersion: %s", APIVersion)
			return nil, false
		}
		n = n.Content[0]
	}
	return n, true
}

func yamlErrorPos(err error) Pos {
	if m := yamlLine().FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Pos{Line: line, Column: 1}
	}
	return Pos{Line: 1, Column: 1}
}

func yamlErrorText(err error) string {
	if m := yamlLine().FindStringSubmatch(err.Error()); m != nil {
		return "YAML syntax: " + m[2]
	}
	return "YAML syntax: " + strings.TrimPrefix(err.Error(), "yaml: ")
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

func offsetPos(src []byte, off int) Pos {
	line := 1 + bytes.Count(src[:off], []byte("\n"))
	start := bytes.LastIndexByte(src[:off], '\n') + 1
	return Pos{Line: line, Column: utf8.RuneCount(src[start:off]) + 1}
}

type field struct {
	name     string
	index    []int
	required bool
}

type decoder struct {
	sink   *diagSink
	pos    map[string]Pos
	keyPos map[string]Pos
	budget int
	fields map[reflect.Type][]field
	// origin names the file of nodes that came from a fragment of a
	// layered spec (nil for one file).
	origin map[*yaml.Node]string
}

// at is the position of n, with its file when it came from a fragment.
func (d *decoder) at(n *yaml.Node) Pos {
	return Pos{Line: n.Line, Column: n.Column, File: d.origin[n]}
}

var (
	scalarType = reflect.TypeOf((*scalar)(nil)).Elem()
	patchType  = reflect.TypeFor[Patch]()
)

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string, depth int) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if d.budget--; d.budget < 0 {
		if d.budget == -1 {
			d.sink.addDecode(d.at(n), path, "spec expands to more than %d YAML nodes (alias expansion?)", maxNodes)
		}
		return
	}
	if depth > maxDepth {
		d.sink.addDecode(d.at(n), path, "nesting deeper than %d levels", maxDepth)
		return
	}
	if _, ok := d.pos[path]; !ok {
		d.pos[path] = d.at(n)
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // absent and null mean the same
	}
	if v.Type() == patchType {
		d.decodePatch(n, v.Addr().Interface().(*Patch), path, depth)
		return
	}
	if v.Kind() != reflect.Pointer && v.CanAddr() && v.Addr().Type().Implements(scalarType) {
		if n.Kind != yaml.ScalarNode {
			d.typeError(n, path, "a scalar")
			return
		}
		if msg := v.Addr().Interface().(scalar).decodeScalar(n); msg != "" {
			d.sink.addDecode(d.at(n), path, "%s", msg)
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path, depth)
	case reflect.Struct:
		d.decodeStruct(n, v, path, depth)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.typeError(n, path, "a list")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), indexPath(path, i), depth+1)
		}
		v.Set(s)
	case reflect.Map:
		d.decodeMap(n, v, path, depth)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
			if n.Kind == yaml.ScalarNode {
				value := n.Value
				if IsSecretKey(path[strings.LastIndexByte(path, '.')+1:]) {
					value = Redacted
				}
				d.sink.addDecode(d.at(n), path, "expected a string, got %s %s; quote it if it is meant as text", tagName(n.Tag), value)
				return
			}
			d.typeError(n, path, "a string")
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.sink.addDecode(d.at(n), path, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(strings.EqualFold(n.Value, "true"))
	case reflect.Int, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&i) != nil {
			d.sink.addDecode(d.at(n), path, "expected an integer, got %s", describe(n))
			return
		}
		v.SetInt(i)
	case reflect.Interface:
		d.decodeAny(n, v, path, depth)
	default:
		d.sink.addDecode(d.at(n), path, "internal: cannot decode into %s", v.Type())
	}
}

// decodeAny decodes free-form data (runtime options), after checking that
// the subtree is of reasonable size; the YAML library resolves its merge
// keys.
func (d *decoder) decodeAny(n *yaml.Node, v reflect.Value, path string, depth int) {
	if !d.walkFree(n, path, depth) {
		return
	}
	var x any
	if err := n.Decode(&x); err != nil {
		d.sink.addDecode(d.at(n), path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		return
	}
	v.Set(reflect.ValueOf(&x).Elem())
}

func (d *decoder) walkFree(n *yaml.Node, path string, depth int) bool {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if d.budget--; d.budget < 0 {
		if d.budget == -1 {
			d.sink.addDecode(d.at(n), path, "spec expands to more than %d YAML nodes (alias expansion?)", maxNodes)
		}
		return false
	}
	if depth > maxDepth {
		d.sink.addDecode(d.at(n), path, "nesting deeper than %d levels", maxDepth)
		return false
	}
	for _, c := range n.Content {
		if !d.walkFree(c, path, depth+1) {
			return false
		}
	}
	return true
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string, depth int) {
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, "a mapping")
		return
	}
	fields := d.fieldsOf(v.Type())
	values := map[string]*yaml.Node{}
	for _, kv := range d.pairs(n, path, depth) {
		key, k, val := kv.key, kv.k, kv.v
		values[key] = val
		f := lookupField(fields, key)
		if f == nil {
			msg := fmt.Sprintf("unknown key %q", key)
			if s := suggest(key, fieldNames(fields)); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			d.sink.addDecode(d.at(k), path, "%s", msg)
			continue
		}
		d.decode(val, v.FieldByIndex(f.index), keyPath(path, key), depth+1)
	}
	for _, f := range fields {
		if !f.required {
			continue
		}
		val, ok := values[f.name]
		for ok && val.Kind == yaml.AliasNode {
			val = val.Alias
		}
		if !ok || (val.Kind == yaml.ScalarNode && val.Tag == "!!null") {
			d.sink.addDecode(d.at(n), path, "missing required key %q", f.name)
		}
	}
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string, depth int) {
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, "a mapping")
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	for _, kv := range d.pairs(n, path, depth) {
		key, k, val := kv.key, kv.k, kv.v
		d.keyPos[keyPath(path, key)] = d.at(k)
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(val, elem, keyPath(path, key), depth+1)
		v.SetMapIndex(reflect.ValueOf(key).Convert(v.Type().Key()), elem)
	}
}

// pair is one key of a mapping with its value.
type pair struct {
	key  string
	k, v *yaml.Node
}

// pairs returns the keys of mapping n in order, with YAML merge keys
// resolved as the merge-key type defines them (and as cloud-init and
// compose files use them): `<<: *base` or `<<: [*a, *b]` adds the keys of
// the referenced mappings that n does not set itself, earlier mappings
// winning over later ones, recursively. A merged key keeps its own node,
// so a diagnostic about it points at the line where the value is written
// (the anchor), not at the `<<`. Explicit duplicates are errors; every
// pair counts against the node budget, so merges cannot multiply work.
func (d *decoder) pairs(n *yaml.Node, path string, depth int) []pair {
	var out, merges []pair
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		for k.Kind == yaml.AliasNode {
			k = k.Alias
		}
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merges = append(merges, pair{k: k, v: val})
			continue
		}
		key, ok := d.mapKey(k, path, seen)
		if ok {
			out = append(out, pair{key, k, val})
		}
	}
	for _, m := range merges {
		for _, src := range d.mergeSources(m.k, m.v, path) {
			if depth > maxDepth {
				d.sink.addDecode(d.at(m.k), path, "merge keys nested deeper than %d levels", maxDepth)
				return out
			}
			for _, kv := range d.pairs(src, path, depth+1) {
				if d.budget--; d.budget < 0 {
					if d.budget == -1 {
						d.sink.addDecode(d.at(m.k), path, "spec expands to more than %d YAML nodes (merge keys?)", maxNodes)
					}
					return out
				}
				if _, set := seen[kv.key]; !set {
					seen[kv.key] = kv.k
					out = append(out, kv)
				}
			}
		}
	}
	return out
}

// mergeSources returns the mappings a merge key's value names: one mapping
// or a list of them, each usually an alias.
func (d *decoder) mergeSources(k, val *yaml.Node, path string) []*yaml.Node {
	val = deref(val)
	var srcs []*yaml.Node
	switch val.Kind {
	case yaml.MappingNode:
		srcs = append(srcs, val)
	case yaml.SequenceNode:
		for _, item := range val.Content {
			if item = deref(item); item.Kind != yaml.MappingNode {
				d.sink.addDecode(d.at(item), path, "a merge key (<<) takes a mapping or a list of mappings, got %s in the list", describe(item))
				return nil
			}
			srcs = append(srcs, item)
		}
	default:
		d.sink.addDecode(d.at(k), path, "a merge key (<<) takes a mapping or a list of mappings, got %s", describe(val))
	}
	return srcs
}

// mapKey checks one mapping key: a plain scalar, not a duplicate. It
// records the key in seen.
func (d *decoder) mapKey(k *yaml.Node, path string, seen map[string]*yaml.Node) (string, bool) {
	if k.Kind != yaml.ScalarNode {
		d.sink.addDecode(d.at(k), path, "mapping keys must be plain strings")
		return "", false
	}
	if prev, dup := seen[k.Value]; dup {
		d.sink.addDecode(d.at(k), path, "duplicate key %q (first defined at line %d)", k.Value, prev.Line)
		return "", false
	}
	seen[k.Value] = k
	return k.Value, true
}

func (d *decoder) typeError(n *yaml.Node, path, want string) {
	d.sink.addDecode(d.at(n), path, "expected %s, got %s", want, describe(n))
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "…"
		}
		return fmt.Sprintf("%s %q", tagName(n.Tag), v)
	}
	return "an alias"
}

func (d *decoder) fieldsOf(t reflect.Type) []field {
	if fs, ok := d.fields[t]; ok {
		return fs
	}
	fs := structFields(t)
	d.fields[t] = fs
	return fs
}

// structFields lists the YAML keys of a struct, flattening ",inline" fields.
func structFields(t reflect.Type) []field {
	var out []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if opts == "inline" {
			for _, f := range structFields(sf.Type) {
				f.index = append([]int{i}, f.index...)
				out = append(out, f)
			}
			continue
		}
		if name == "" || name == "-" || !sf.IsExported() {
			continue
		}
		out = append(out, field{name: name, index: []int{i}, required: sf.Tag.Get("required") == "true"})
	}
	return out
}

func lookupField(fs []field, name string) *field {
	for i := range fs {
		if fs[i].name == name {
			return &fs[i]
		}
	}
	return nil
}

func fieldNames(fs []field) []string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.name
	}
	sort.Strings(names)
	return names
}

// suggest returns the known name closest to key when it is close enough to
// be a likely typo.
func suggest(key string, names []string) string {
	best, bestDist := "", len(key)/2+2
	for _, n := range names {
		if strings.EqualFold(n, key) {
			return n
		}
		if dist := levenshtein(strings.ToLower(key), strings.ToLower(n)); dist < bestDist {
			best, bestDist = n, dist
		}
	}
	return best
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

var plainKey = lazyRegexp(`^[A-Za-z0-9_-]+$`)

// keyPath appends a mapping key to a path: `a.b`, or `a["x.y"]` for keys
// that are not plain identifiers.
func keyPath(parent, key string) string {
	if !plainKey().MatchString(key) {
		return parent + "[" + strconv.Quote(key) + "]"
	}
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func indexPath(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}
