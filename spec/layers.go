package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Layered specs: a base spec (the one a golden image carries) and
// fragments over it (a site's mirrors, first-boot user data), merged in
// order before anything is decoded. Every fragment is a Node document of
// its own (apiVersion and kind included) and sets only what it changes.
//
//   - Mappings merge key by key; a key whose value is null in a fragment
//     is deleted.
//   - Lists of named items merge by their key: files by path, units by
//     name (and a unit's dropins by name), downloads and images by url,
//     mirrors by prefix, a registry's mirrors by host. An item with a key
//     not yet there is appended; one that is there is merged into it; an
//     item with `$delete: true` removes it.
//   - Any other list, and every scalar, is replaced by the fragment's.
//   - A fragment that gives a value of another shape than the spec before
//     it (a list where that has a mapping, a mapping where it has a
//     scalar) is an error naming both files and lines.
//
// Ignition merges appended configs in the same spirit (named lists by
// their key); nodeadm merges the NodeConfig documents of MIME parts. After
// the merge the spec is decoded, validated and defaulted as one, and every
// diagnostic names the file and line its value came from.

// Layer is one file of a layered spec.
type Layer struct {
	File   string
	Source []byte
}

// FragmentDir is the directory next to a spec whose *.yaml files are
// merged over it, in lexical order, after fragments given explicitly:
// /etc/nodeprov/node.d for /etc/nodeprov/node.yaml.
func FragmentDir(specFile string) string {
	return filepath.Join(filepath.Dir(specFile), strings.TrimSuffix(filepath.Base(specFile), filepath.Ext(specFile))+".d")
}

// DeleteKey marks a named list item a fragment removes.
const DeleteKey = "$delete"

// listKeys are the lists of named items, by their shape path (mapping
// keys joined by '.', "*" for any key of a free-form mapping, "[]" for
// the items of a list), and the field that names their items.
var listKeys = map[string]string{
	"files":                           "path",
	"units":                           "name",
	"units[].dropins":                 "name",
	"downloads":                       "url",
	"images":                          "url",
	"mirrors":                         "prefix",
	"containerd.registries.*.mirrors": "host",
}

// freeMaps are mappings whose keys are names, not fields: their shape
// path segment is "*".
var freeMaps = map[string]bool{
	"containerd.registries": true, "containerd.runtimes": true, "keyrings": true, "kernel.sysctl": true,
}

// LoadFiles loads the spec in files[0] with the fragments in files[1:]
// merged over it, then those in its FragmentDir (when that exists; not for
// standard input, "-", which only files[0] may be).
func LoadFiles(files []string, stdin io.Reader) (*Document, error) {
	all := append([]string(nil), files...)
	if files[0] != "-" {
		extra, err := filepath.Glob(filepath.Join(FragmentDir(files[0]), "*.yaml"))
		if err != nil {
			return nil, err
		}
		sort.Strings(extra)
		all = append(all, extra...)
	}
	var layers []Layer
	for i, f := range all {
		if f == "-" && i > 0 {
			return nil, fmt.Errorf("read spec: only the base spec can come from standard input")
		}
		src, err := readSpec(f, stdin)
		if err != nil {
			return nil, err
		}
		layers = append(layers, Layer{File: f, Source: src})
	}
	if len(layers) == 1 {
		return Load(layers[0].File, layers[0].Source)
	}
	return LoadLayers(layers)
}

// LoadLayers merges layers[1:] over layers[0] and loads the result as one
// spec. The Document's File is the base's; its Digest covers every layer.
func LoadLayers(layers []Layer) (*Document, error) {
	base := layers[0]
	doc := newDocument(base.File, base.Source)
	sink := &diagSink{file: doc.File, order: map[string]int{}}
	sources := map[string][]byte{}
	h := sha256.New()
	origin := map[*yaml.Node]string{}
	var merged *yaml.Node
	parsed := true
	for i, l := range layers {
		name := l.File
		if name == "-" {
			name = "<stdin>"
		}
		sink.order[name] = i
		sources[name] = l.Source
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(l.Source))
		h.Write(l.Source)
		sink.file = name
		root, ok := parseYAML(l.Source, sink)
		if !ok {
			parsed = false
			continue
		}
		if i > 0 {
			markOrigin(root, name, origin, 0)
		}
		if merged == nil {
			merged = root
			continue
		}
		m := &merger{sink: sink, origin: origin, base: doc.File}
		m.merge(merged, root, "", "")
	}
	sink.file = doc.File
	doc.Digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	if parsed && len(sink.items) == 0 {
		decodeRoot(doc, sink, merged, origin)
		validate(doc, sink)
	}
	if err := sink.result(base.Source); err != nil {
		err.(*Diagnostics).sources = sources
		return nil, err
	}
	applyDefaults(doc.Spec)
	return doc, nil
}

// markOrigin records file as the origin of every node of a fragment.
func markOrigin(n *yaml.Node, file string, origin map[*yaml.Node]string, depth int) {
	if n == nil || depth > maxDepth || len(origin) > maxNodes {
		return
	}
	origin[n] = file
	for _, c := range n.Content {
		markOrigin(c, file, origin, depth+1)
	}
}

// merger merges one fragment into the spec before it.
type merger struct {
	sink   *diagSink
	origin map[*yaml.Node]string
	base   string
}

func (m *merger) file(n *yaml.Node) string {
	if f, ok := m.origin[n]; ok {
		return f
	}
	return m.base
}

func (m *merger) pos(n *yaml.Node) Pos {
	return Pos{Line: n.Line, Column: n.Column, File: m.origin[n]}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return "a value"
}

// merge merges src into dst, two mappings, at key path path (for
// messages) and shape path shape (for listKeys).
func (m *merger) merge(dst, src *yaml.Node, path, shape string) {
	for i := 0; i+1 < len(src.Content); i += 2 {
		k, v := src.Content[i], src.Content[i+1]
		key := k.Value
		kp, ks := keyPath(path, key), shapeKey(shape, key)
		j := mappingIndex(dst, key)
		switch {
		case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
			if j >= 0 {
				dst.Content = append(dst.Content[:j], dst.Content[j+2:]...)
			}
		case j < 0:
			dst.Content = append(dst.Content, k, v)
		default:
			m.mergeValue(dst, j+1, v, kp, ks)
		}
	}
}

// mergeValue merges v into the value at dst.Content[at].
func (m *merger) mergeValue(dst *yaml.Node, at int, v *yaml.Node, path, shape string) {
	old, v := deref(dst.Content[at]), deref(v)
	switch {
	case old.Kind != v.Kind && !(old.Kind == yaml.ScalarNode && old.Tag == "!!null"):
		m.sink.addDecode(m.pos(v), path, "%s gives %s here, but %s:%d:%d gives %s: a fragment changes values, not their shape",
			m.file(v), kindName(v), m.file(old), old.Line, old.Column, kindName(old))
	case v.Kind == yaml.MappingNode:
		m.merge(old, v, path, shape)
	case v.Kind == yaml.SequenceNode && listKeys[shape] != "":
		m.mergeList(old, v, path, shape, listKeys[shape])
	default:
		dst.Content[at] = v
	}
}

// mergeList merges the named items of src into dst by their key field.
func (m *merger) mergeList(dst, src *yaml.Node, path, shape, keyField string) {
	for i, item := range src.Content {
		item = deref(item)
		ip := indexPath(path, i)
		if item.Kind != yaml.MappingNode {
			m.sink.addDecode(m.pos(item), ip, "expected a mapping with %s: the items of %s merge by it", keyField, path)
			continue
		}
		key, ok := scalarField(item, keyField)
		if !ok {
			m.sink.addDecode(m.pos(item), ip, "a fragment's %s item needs %s: the items merge by it", path, keyField)
			continue
		}
		del := false
		if d, ok := scalarField(item, DeleteKey); ok {
			if d != "true" {
				m.sink.addDecode(m.pos(item), keyPath(ip, DeleteKey), "expected true")
				continue
			}
			del = true
		}
		j := -1
		for x, have := range dst.Content {
			if k, ok := scalarField(deref(have), keyField); ok && k == key {
				j = x
				break
			}
		}
		switch {
		case del && j < 0:
			m.sink.addDecode(m.pos(item), ip, "%s deletes the %s item with %s %q, which the spec before it does not have", m.file(item), path, keyField, key)
		case del:
			dst.Content = append(dst.Content[:j], dst.Content[j+1:]...)
		case j < 0:
			dst.Content = append(dst.Content, item)
		default:
			m.merge(deref(dst.Content[j]), item, ip, shape+"[]")
		}
	}
}

// scalarField is the value of a mapping's scalar field.
func scalarField(n *yaml.Node, key string) (string, bool) {
	if n.Kind != yaml.MappingNode {
		return "", false
	}
	if i := mappingIndex(n, key); i >= 0 && n.Content[i+1].Kind == yaml.ScalarNode {
		return n.Content[i+1].Value, true
	}
	return "", false
}

// mappingIndex is the index of key's key node in a mapping, or -1.
func mappingIndex(n *yaml.Node, key string) int {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return i
		}
	}
	return -1
}

// shapeKey extends a shape path by a mapping key: "*" under a free-form
// mapping.
func shapeKey(shape, key string) string {
	if freeMaps[shape] {
		key = "*"
	}
	if shape == "" {
		return key
	}
	return shape + "." + key
}
