package main

import (
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/nodeprov/nodeprov/e2e/artifacts"
	"github.com/nodeprov/nodeprov/spec"
)

const testURL = "http://127.0.0.1:40123"

var (
	keyOnce sync.Once
	keyTree *artifacts.Tree
	keyErr  error
	keyDir  string
)

// smallTree is a tree of RandomSources, built once (TestMain removes it).
func smallTree(t *testing.T) *artifacts.Tree {
	t.Helper()
	keyOnce.Do(func() {
		if keyDir, keyErr = os.MkdirTemp("", "mirror-test-"); keyErr != nil {
			return
		}
		var src *artifacts.Sources
		if src, keyErr = artifacts.RandomSources(keyDir+"/src", 1, 16<<10); keyErr != nil {
			return
		}
		keyTree, keyErr = artifacts.Build(keyDir+"/tree", artifacts.Options{Sources: src})
	})
	if keyErr != nil {
		t.Fatal(keyErr)
	}
	return keyTree
}

func TestMain(m *testing.M) {
	code := m.Run()
	if keyDir != "" {
		os.RemoveAll(keyDir)
	}
	os.Exit(code)
}

// TestRenderDemoSpec: the committed template renders to a spec that
// loads, whose mirrors point at the server and whose runc keyring is the
// tree's key; every other line is the template's, and every URL it expands
// to is served from the tree.
func TestRenderDemoSpec(t *testing.T) {
	tr := smallTree(t)
	tmpl, err := os.ReadFile("../../examples/demo-node.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := renderSpec(tmpl, testURL, tr.Keyring)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := spec.Load("node.yaml", out)
	if err != nil {
		t.Fatalf("rendered spec: %v\n%s", err, out)
	}
	n := doc.Spec
	if len(n.Mirrors) != 2 || n.Mirrors[0].To != testURL+"/github/" || n.Mirrors[1].To != testURL+"/gcs/" {
		t.Errorf("mirrors %+v", n.Mirrors)
	}
	if k := n.Keyrings["runc"]; k.Armored != tr.Keyring || k.Path != "" {
		t.Errorf("keyrings.runc: path %q, armored:\n%s\nwant the tree's key", k.Path, k.Armored)
	}
	if !strings.HasPrefix(string(out), "# yaml-language-server: $schema=../schema/nodeprov.schema.json\n") {
		t.Error("the modeline is gone")
	}

	// Line by line: only the two mirror targets and the keyring entry
	// differ from the template.
	tl, ol := strings.Split(string(tmpl), "\n"), strings.Split(string(out), "\n")
	keyLines := strings.Count(strings.TrimRight(tr.Keyring, "\n"), "\n") + 1
	if len(ol) != len(tl)+1+keyLines {
		t.Errorf("%d lines rendered from %d, want %d more (armored: | and the key)", len(ol), len(tl), 1+keyLines)
	}
	var changed []string
	for i, j := 0, 0; i < len(tl) && j < len(ol); i, j = i+1, j+1 {
		if tl[i] == ol[j] {
			continue
		}
		changed = append(changed, strings.TrimSpace(tl[i]))
		if strings.HasPrefix(strings.TrimSpace(tl[i]), "runc: {path:") {
			j += 1 + keyLines
		}
	}
	want := []string{"to: http://127.0.0.1:8080/github/", "to: http://127.0.0.1:8080/gcs/", "runc: {path: /etc/nodeprov/keys/runc.keyring}"}
	if strings.Join(changed, "|") != strings.Join(want, "|") {
		t.Errorf("changed template lines %q, want %q", changed, want)
	}

	// Served: the tree's files at the server's URLs.
	if err := checkServed("node.yaml", out, tr, testURL); err != nil {
		t.Error(err)
	}
	if err := checkServed("node.yaml", out, tr, "http://127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "runc.amd64.asc") {
		t.Errorf("URLs of another server pass: %v", err)
	}
}

// TestRenderForms: other ways of writing the two places, and templates
// the mirror cannot render.
func TestRenderForms(t *testing.T) {
	const head = "apiVersion: nodeprov/v1alpha1\nkind: Node\ncomponents:\n  runc: {version: 1.1.5, keyring: upstream}\n  gvisor: {version: \"20221219\", shim: false}\n"
	const key = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxsBNBGsEbQEBCAC1\n-----END PGP PUBLIC KEY BLOCK-----\n"
	for _, c := range []struct {
		name, tmpl string
		want       []string // substrings of the output
		err        string
	}{
		{
			name: "block keyring with a block scalar and a following key",
			tmpl: head + "mirrors: [{prefix: https://github.com/, to: 'http://x/'}, {prefix: \"https://storage.googleapis.com/\", to: \"http://y/\"}]\n" +
				"keyrings:\n    upstream:\n        armored: |\n            -----BEGIN PGP PUBLIC KEY BLOCK-----\n            old\n\n            -----END PGP PUBLIC KEY BLOCK-----\n        allowExpired: true\n    other: {path: /k}\nfiles: []\n",
			want: []string{
				"to: '" + testURL + "/github/'}, {prefix: \"https://storage.googleapis.com/\", to: \"" + testURL + "/gcs/\"}]\n",
				"keyrings:\n    upstream:\n      armored: |\n        -----BEGIN PGP PUBLIC KEY BLOCK-----\n\n        xsBNBGsEbQEBCAC1\n        -----END PGP PUBLIC KEY BLOCK-----\n    other: {path: /k}\nfiles: []\n",
			},
		},
		{
			name: "no mirrors: appended",
			tmpl: head + "keyrings:\n  upstream: {path: /k}",
			want: []string{"keyrings:\n  upstream:\n    armored: |\n      -----BEGIN", "END PGP PUBLIC KEY BLOCK-----\n\nmirrors:\n  - prefix: https://github.com/\n    to: " + testURL + "/github/\n"},
		},
		{
			name: "no keyring on runc: keyrings untouched",
			tmpl: "apiVersion: nodeprov/v1alpha1\nkind: Node\ncomponents:\n  runc: {version: 1.1.5}\nkeyrings:\n  upstream: {path: /k}\nmirrors:\n  - {prefix: https://github.com/, to: http://x/}\n",
			want: []string{"keyrings:\n  upstream: {path: /k}\nmirrors:\n  - {prefix: https://github.com/, to: " + testURL + "/github/}\n"},
		},
		{name: "unknown prefix", tmpl: head + "mirrors:\n  - {prefix: https://example.com/, to: http://x/}\n", err: "does not serve https://example.com/"},
		{name: "keyring missing", tmpl: head + "keyrings:\n  other: {path: /k}\n", err: `"upstream" is not in keyrings`},
		{name: "flow keyrings", tmpl: head + "keyrings: {upstream: {path: /k}}\n", err: "block mapping"},
		{name: "multi-line to", tmpl: head + "mirrors:\n  - prefix: https://github.com/\n    to: >-\n      http://x/\n", err: "plain or quoted"},
		{name: "not a mapping", tmpl: "- a\n", err: "not a YAML mapping"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := renderSpec([]byte(c.tmpl), testURL, key)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q\n%s", err, c.err, out)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range c.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
