package containerd

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/nodeprov/nodeprov/spec"
)

// fuzzSpec is a containerd section with every part of the render in use, so
// that a patch can collide with each kind of value (tables, arrays, strings,
// booleans, integers).
const fuzzSpec = `apiVersion: nodeprov/v1alpha1
kind: Node
containerd:
  cgroupDriver: systemd
  runtimes:
    runsc: {type: io.containerd.runsc.v1, runscConfig: {network: none}, podAnnotations: [dev.gvisor.*]}
    kata: {type: io.containerd.kata.v2, privilegedWithoutHostDevices: true, options: {ConfigPath: /etc/kata.toml, Debug: true, Level: 3}}
  registries:
    docker.io: {mirrors: [{host: "https://mirror.example:5000"}]}
  cni: {network: bridge}
`

// FuzzMergePatch renders the containerd config with an arbitrary TOML patch
// for each config version. Render must not panic; a patch that does not
// parse is an error naming containerd.patch; a patch that parses gives a
// config that starts with the managed marker, parses as TOML again (it is
// what containerd reads) and holds exactly the RFC 7396 merge of the patch
// over the unpatched render. MergePatch must not modify its arguments and
// applying the same patch twice changes nothing more.
func FuzzMergePatch(f *testing.F) {
	for _, seed := range []string{
		"",
		"version = 3",
		"[plugins.\"io.containerd.grpc.v1.cri\"]\nenable_selinux = true\n",
		"[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\nSystemdCgroup = false\n",
		"plugins = 1",
		"imports = []\n[grpc]\naddress = \"/run/x.sock\"\nuid = 0\n",
		"[[plugins.x.list]]\na = 1\n[[plugins.x.list]]\nb = 2\n",
		"[a.b.c.d.e.f]\ng = 1979-05-27T07:32:00Z\nh = 1979-05-27\ni = 07:32:00\nj = inf\nk = nan\n",
		"\"\" = 1\n\"a\\nb\" = 'c'\n\"\\u0000\" = 2\n",
		"root = \"/var/lib/containerd\"\nstate = { a = { b = [1, 2.5, \"x\", [true]] } }\n",
		"[plugins]\n\"io.containerd.grpc.v1.cri\" = \"replaced\"\n",
		"= broken",
	} {
		f.Add(seed, uint8(2))
		f.Add(seed, uint8(3))
	}
	doc, err := spec.Load("fuzz.yaml", []byte(fuzzSpec))
	if err != nil {
		f.Fatal(err)
	}
	base := *doc.Spec.Containerd
	f.Fuzz(func(t *testing.T, patch string, version uint8) {
		target := Target{ConfigVersion: 2 + int(version%2), Minor: int(version / 2 % 3), SystemdCgroup: version&8 != 0}
		c := base
		c.Patch = spec.Patch{TOML: patch}
		got, err := Render(&c, target)

		var p map[string]any
		perr := toml.Unmarshal([]byte(patch), &p)
		if strings.TrimSpace(patch) == "" {
			perr, p = nil, nil
		}
		if perr != nil {
			if err == nil || !strings.HasPrefix(err.Error(), "containerd.patch: ") {
				t.Fatalf("patch %q does not parse (%v), but Render gave %v", patch, perr, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("patch %q parses, but Render fails: %v", patch, err)
		}
		if !bytes.HasPrefix(got, []byte(Marker+"\n")) {
			t.Fatalf("render does not start with the marker:\n%s", got)
		}
		var rendered map[string]any
		if err := toml.Unmarshal(got, &rendered); err != nil {
			t.Fatalf("patch %q: the rendered config is not valid TOML: %v\n%s", patch, err, got)
		}

		unpatched := base
		unpatched.Patch = spec.Patch{}
		plain, err := Render(&unpatched, target)
		if err != nil {
			t.Fatal(err)
		}
		var want map[string]any
		if err := toml.Unmarshal(plain, &want); err != nil {
			t.Fatal(err)
		}
		if p != nil {
			wantCopy, pCopy := deepCopy(want), deepCopy(p)
			merged := MergePatch(want, p)
			if !reflect.DeepEqual(want, wantCopy) || !reflect.DeepEqual(p, pCopy) && !hasNaN(p) {
				t.Fatalf("MergePatch modified its arguments (patch %q)", patch)
			}
			if again := MergePatch(merged, p); !sameTOML(t, again, merged) {
				t.Fatalf("patch %q is not idempotent", patch)
			}
			want = merged.(map[string]any)
		}
		if !sameTOML(t, rendered, want) {
			gotB, _ := toml.Marshal(rendered)
			wantB, _ := toml.Marshal(want)
			t.Fatalf("patch %q: rendered config is not the merge of the patch over the render\ngot:\n%s\nwant:\n%s", patch, gotB, wantB)
		}
	})
}

// sameTOML compares two TOML documents by their canonical (sorted)
// encoding, which also treats NaN as equal to itself.
func sameTOML(t *testing.T, a, b any) bool {
	t.Helper()
	ab, err := toml.Marshal(a)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	bb, err := toml.Marshal(b)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return bytes.Equal(ab, bb)
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = deepCopy(e)
		}
		return out
	}
	return v
}

// hasNaN reports whether a NaN float is anywhere in v (DeepEqual never
// finds NaN equal to itself).
func hasNaN(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			if hasNaN(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if hasNaN(e) {
				return true
			}
		}
	case float64:
		return x != x
	}
	return false
}
