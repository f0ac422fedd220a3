package main

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/nodeprov/nodeprov/e2e/artifacts"
	"github.com/nodeprov/nodeprov/spec"
)

// renderSpec returns the spec template pointed at a mirror: every
// mirrors[].to whose prefix the mirror serves is set to the mirror's URL
// for it, and the entry of keyrings that components.runc.keyring names is
// replaced by the armored key, inline. Everything else, comments included,
// is kept byte for byte, so the spec applied is the one a user reads. A
// template without mirrors: gets the mirror's block appended.
func renderSpec(tmpl []byte, serverURL, armoredKey string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(tmpl, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("the template is not a YAML mapping")
	}
	root := doc.Content[0]
	t := &template{lines: strings.SplitAfter(string(tmpl), "\n")}

	served := map[string]string{}
	for _, m := range artifacts.Mirrors(serverURL) {
		served[m.Prefix] = m.To
	}
	if _, mirrors := lookup(root, "mirrors"); mirrors == nil {
		t.tail = "\n" + artifacts.MirrorsYAML(serverURL)
	} else {
		if mirrors.Kind != yaml.SequenceNode {
			return nil, fmt.Errorf("line %d: mirrors is not a list", mirrors.Line)
		}
		for i, m := range mirrors.Content {
			_, prefix := lookup(m, "prefix")
			_, to := lookup(m, "to")
			if prefix == nil || to == nil {
				return nil, fmt.Errorf("line %d: mirrors[%d] needs prefix and to", m.Line, i)
			}
			url, ok := served[prefix.Value]
			if !ok {
				return nil, fmt.Errorf("line %d: mirrors[%d]: the mirror does not serve %s (it serves %s)", prefix.Line, i, prefix.Value, strings.Join(slices.Sorted(maps.Keys(served)), ", "))
			}
			if err := t.replaceScalar(to, url); err != nil {
				return nil, fmt.Errorf("mirrors[%d].to: %w", i, err)
			}
		}
	}

	_, comps := lookup(root, "components")
	_, runc := lookup(comps, "runc")
	_, name := lookup(runc, "keyring")
	if name == nil {
		return t.String(), nil
	}
	keyringsKey, keyrings := lookup(root, "keyrings")
	key, entry := lookup(keyrings, name.Value)
	switch {
	case entry == nil:
		return nil, fmt.Errorf("line %d: components.runc.keyring %q is not in keyrings", name.Line, name.Value)
	case keyrings.Style&yaml.FlowStyle != 0 || key.Line == keyringsKey.Line:
		return nil, fmt.Errorf("line %d: write keyrings as a block mapping, one line per entry", keyringsKey.Line)
	}
	indent := strings.Repeat(" ", key.Column-1)
	var b strings.Builder
	fmt.Fprintf(&b, "%s%s:\n%s  armored: |\n", indent, name.Value, indent)
	for _, l := range strings.SplitAfter(strings.TrimRight(armoredKey, "\n")+"\n", "\n") {
		switch l {
		case "":
		case "\n":
			b.WriteString(l) // no trailing blanks on the armor's empty line
		default:
			b.WriteString(indent + "    " + l)
		}
	}
	t.replaceLines(key.Line, t.lastLine(entry, key.Column), b.String())
	return t.String(), nil
}

// template is the text of a spec with pending edits.
type template struct {
	lines []string // with their line endings; lines[0] is line 1
	edits []edit
	tail  string
}

// edit replaces the text from (line, col) to (endLine, endCol), exclusive,
// with text; columns are 1-based rune positions, like yaml.Node's.
type edit struct {
	line, col, endLine, endCol int
	text                       string
}

func (t *template) replaceScalar(n *yaml.Node, value string) error {
	raw := n.Value
	switch n.Style {
	case 0:
	case yaml.DoubleQuotedStyle:
		raw, value = `"`+raw+`"`, `"`+value+`"`
	case yaml.SingleQuotedStyle:
		raw, value = "'"+raw+"'", "'"+value+"'"
	default:
		return fmt.Errorf("line %d: write the URL as a plain or quoted scalar", n.Line)
	}
	line := []rune(t.lines[n.Line-1])
	if n.Column-1+len([]rune(raw)) > len(line) || string(line[n.Column-1:n.Column-1+len([]rune(raw))]) != raw {
		return fmt.Errorf("line %d: write the URL on one line, without escapes", n.Line)
	}
	t.edits = append(t.edits, edit{n.Line, n.Column, n.Line, n.Column + len([]rune(raw)), value})
	return nil
}

// replaceLines replaces lines first..last (1-based, inclusive) with text,
// which ends in a newline.
func (t *template) replaceLines(first, last int, text string) {
	t.edits = append(t.edits, edit{first, 1, last + 1, 1, text})
}

// lastLine is the last line of a mapping value whose key is at column
// keyCol: its last node's line, and the lines after it that are indented
// deeper than the key (a block scalar's).
func (t *template) lastLine(n *yaml.Node, keyCol int) int {
	last := maxLine(n)
	for i := last + 1; i <= len(t.lines); i++ {
		l := strings.TrimRight(t.lines[i-1], "\r\n")
		if strings.TrimSpace(l) == "" {
			continue
		}
		if len(l)-len(strings.TrimLeft(l, " ")) < keyCol || strings.HasPrefix(strings.TrimSpace(l), "#") {
			break
		}
		last = i
	}
	return last
}

func maxLine(n *yaml.Node) int {
	m := n.Line
	for _, c := range n.Content {
		m = max(m, maxLine(c))
	}
	return m
}

// offset is the byte offset of a 1-based line and rune column; the line
// after the last is the end of the text.
func (t *template) offset(line, col int) int {
	off := 0
	for _, l := range t.lines[:line-1] {
		off += len(l)
	}
	if line-1 < len(t.lines) {
		off += len(string([]rune(t.lines[line-1])[:col-1]))
	}
	return off
}

// String applies the edits (which do not overlap), last first.
func (t *template) String() []byte {
	text := strings.Join(t.lines, "")
	edits := append([]edit(nil), t.edits...)
	sort.Slice(edits, func(i, j int) bool {
		return t.offset(edits[i].line, edits[i].col) > t.offset(edits[j].line, edits[j].col)
	})
	for _, e := range edits {
		text = text[:t.offset(e.line, e.col)] + e.text + text[t.offset(e.endLine, e.endCol):]
	}
	if t.tail != "" {
		if text != "" && !strings.HasSuffix(text, "\n") {
			text += "\n"
		}
		text += t.tail
	}
	return []byte(text)
}

// lookup returns the key and value nodes of key in a mapping node (nil
// when n is nil, not a mapping, or lacks the key).
func lookup(n *yaml.Node, key string) (*yaml.Node, *yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}

// checkServed loads a rendered spec and checks that every URL it expands
// to for amd64 (artifacts, checksum files, signatures) is a file the
// mirror serves, so that a spec that could not apply is caught here.
func checkServed(name string, src []byte, tree *artifacts.Tree, serverURL string) error {
	doc, err := spec.Load(name, src)
	if err != nil {
		return err
	}
	expanded, err := spec.Expand(doc.Spec, "amd64")
	if err != nil {
		return err
	}
	var missing []string
	for _, a := range expanded {
		urls := []string{a.URL}
		if c := a.Checksum; c != nil {
			urls = append(urls, c.URL)
			if s := c.Signature; s != nil && s.URL != "" {
				urls = append(urls, s.URL)
			}
		}
		if s := a.Signature; s != nil && s.URL != "" {
			urls = append(urls, s.URL)
		}
		for _, u := range urls {
			rel, ok := strings.CutPrefix(u, serverURL+"/")
			if ok {
				_, err := os.Stat(filepath.Join(tree.Dir, filepath.FromSlash(rel)))
				ok = err == nil
			}
			if !ok {
				missing = append(missing, fmt.Sprintf("%s (%s)", u, a.Name))
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s: the mirror does not serve:\n  %s", name, strings.Join(missing, "\n  "))
	}
	return nil
}
