package spec

import (
	"errors"
	"strings"
	"testing"
)

const baseSpec = header + `metadata: {name: base}
mirrors:
  - {prefix: "https://github.com/", to: "https://mirror.one/github/"}
containerd:
  sandboxImage: registry.k8s.io/pause:3.10
  registries:
    docker.io: {mirrors: [{host: "https://one.example"}]}
  runtimes:
    gvisor: {type: io.containerd.runsc.v1}
files:
  - {path: /etc/a, contents: "a\n"}
  - {path: /etc/b, contents: "b\n", mode: "0600"}
units:
  - name: x.service
    contents: "[Service]\nExecStart=/bin/true\n"
    dropins: [{name: 10-a.conf, contents: "[Service]\nEnvironment=A=1\n"}]
kernel:
  modules: [overlay]
`

func layers(srcs ...string) []Layer {
	var out []Layer
	for i, s := range srcs {
		name := "base.yaml"
		if i > 0 {
			name = "frag" + string(rune('0'+i)) + ".yaml"
		}
		out = append(out, Layer{File: name, Source: []byte(s)})
	}
	return out
}

// TestLayersMerge: mappings merge, named lists merge by their key, other
// lists and scalars are replaced, null deletes a key and $delete an item;
// later fragments win.
func TestLayersMerge(t *testing.T) {
	frag1 := header + `mirrors:
  - {prefix: "https://github.com/", to: "https://mirror.two/github/"}
containerd:
  sandboxImage: mirror.two/pause:3.10
  registries:
    docker.io: {mirrors: [{host: "https://two.example"}]}
  runtimes:
    gvisor: null
files:
  - {path: /etc/b, contents: "b2\n"}
  - {path: /etc/a, $delete: true}
  - {path: /etc/c, contents: "c\n"}
units:
  - name: x.service
    dropins: [{name: 20-b.conf, contents: "[Service]\nEnvironment=B=1\n"}]
kernel:
  modules: [br_netfilter]
`
	frag2 := header + "containerd: {sandboxImage: mirror.three/pause:3.10}\n"
	doc, err := LoadLayers(layers(baseSpec, frag1, frag2))
	if err != nil {
		t.Fatal(err)
	}
	n := doc.Spec
	if n.Metadata.Name != "base" || len(n.Mirrors) != 1 || n.Mirrors[0].To != "https://mirror.two/github/" {
		t.Errorf("metadata %q, mirrors %+v", n.Metadata.Name, n.Mirrors)
	}
	if n.Containerd.SandboxImage != "mirror.three/pause:3.10" {
		t.Errorf("sandboxImage %q: the last fragment wins", n.Containerd.SandboxImage)
	}
	if m := n.Containerd.Registries["docker.io"].Mirrors; len(m) != 2 || m[0].Host != "https://one.example" || m[1].Host != "https://two.example" {
		t.Errorf("registry mirrors (merged by host): %+v", m)
	}
	if _, ok := n.Containerd.Runtimes["gvisor"]; ok {
		t.Error("null did not delete runtimes.gvisor")
	}
	var files []string
	for _, f := range n.Files {
		files = append(files, f.Path+"="+strings.TrimSpace(f.Contents)+"/"+string(f.Mode))
	}
	if got := strings.Join(files, " "); got != "/etc/b=b2/0600 /etc/c=c/0644" {
		t.Errorf("files: %s", got)
	}
	if u := n.Units[0]; len(u.Dropins) != 2 || u.Contents == "" {
		t.Errorf("unit merged by name, dropins by name: %+v", u)
	}
	if got := strings.Join(n.Kernel.Modules, ","); got != "br_netfilter" {
		t.Errorf("kernel.modules (a plain list is replaced): %s", got)
	}
	single, _ := Load("base.yaml", []byte(baseSpec))
	if doc.Digest == single.Digest || doc.File != "base.yaml" {
		t.Errorf("a layered spec's digest must cover the fragments: %s", doc.Digest)
	}
}

// TestLayersDiagnostics: a problem in a fragment is reported at the
// fragment's file and line; a shape conflict names both files and lines.
func TestLayersDiagnostics(t *testing.T) {
	for _, tc := range []struct {
		name, frag string
		want       []string
	}{
		{"bad value in a fragment", header + "containerd:\n  sandboxImage: \"Bad Image\"\n",
			[]string{`frag1.yaml:4:17: containerd.sandboxImage: invalid image reference "Bad Image"`}},
		{"shape conflict", header + "files:\n  path: /etc/a\n",
			[]string{`frag1.yaml:4:3: files: frag1.yaml gives a mapping here, but base.yaml:13:3 gives a list`}},
		{"item without its key", header + "files:\n  - {contents: x}\n",
			[]string{`frag1.yaml:4:5: files[0]: a fragment's files item needs path`}},
		{"deleting what is not there", header + "units:\n  - {name: y.service, $delete: true}\n",
			[]string{`frag1.yaml:4:5: units[0]: frag1.yaml deletes the units item with name "y.service"`}},
		{"unknown key in a fragment", header + "containerd:\n  sandboxImg: x\n",
			[]string{`frag1.yaml:4:3: containerd: unknown key "sandboxImg"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadLayers(layers(baseSpec, tc.frag))
			var ds *Diagnostics
			if !errors.As(err, &ds) {
				t.Fatalf("err = %v", err)
			}
			if len(ds.Items) != len(tc.want) {
				t.Fatalf("diagnostics:\n%s", ds.Error())
			}
			for i, w := range tc.want {
				if got := ds.Items[i].String(); !strings.Contains(got, w) {
					t.Errorf("diagnostic %q, want %q", got, w)
				}
			}
			if p := ds.Pretty(); !strings.Contains(p, "|") {
				t.Errorf("Pretty shows no source line:\n%s", p)
			}
		})
	}
}
