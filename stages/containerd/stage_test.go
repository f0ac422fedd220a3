package containerd

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

var update = flag.Bool("update", false, "rewrite golden files")

func loadSpec(t *testing.T, src string) *spec.Node {
	t.Helper()
	doc, err := spec.Load("node.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return doc.Spec
}

// TestGolden renders every example spec with a containerd section (and
// the specs in testdata/) for both config versions and compares with
// reviewed golden files.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.yaml")
	more, _ := filepath.Glob("testdata/*.yaml")
	files = append(files, more...)
	n := 0
	for _, f := range files {
		src, _ := os.ReadFile(f)
		doc, err := spec.Load(f, src)
		if err != nil {
			t.Fatal(err)
		}
		if doc.Spec.Containerd == nil {
			continue
		}
		for _, v := range []int{2, 3, 4} {
			n++
			name := strings.TrimSuffix(filepath.Base(f), ".yaml") + ".v" + string(rune('0'+v)) + ".toml"
			got, err := Render(doc.Spec.Containerd, Target{ConfigVersion: v, Minor: 1, SystemdCgroup: doc.Spec.Containerd.CgroupDriver == "systemd"})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			golden := filepath.Join("testdata", name)
			if *update {
				os.MkdirAll("testdata", 0o755)
				os.WriteFile(golden, got, 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./stages/containerd -update)", err)
			}
			if string(got) != string(want) {
				t.Errorf("%s differs from the golden file:\n%s", name, got)
			}
			var parsed map[string]any
			if err := toml.Unmarshal(got, &parsed); err != nil {
				t.Errorf("%s is not valid TOML: %v", name, err)
			}
		}
	}
	if n == 0 {
		t.Fatal("no example has a containerd section")
	}
}

// TestTablePaths checks the documented table paths of each version
// (shared/FACTS.md), independent of formatting.
func TestTablePaths(t *testing.T) {
	n := loadSpec(t, `apiVersion: nodeprov/v1alpha1
kind: Node
containerd:
  sandboxImage: example/pause:1
  runtimes:
    gvisor: {type: io.containerd.runsc.v1}
`)
	tests := []struct {
		target Target
		paths  map[string]any
	}{
		{Target{ConfigVersion: 2, SystemdCgroup: true}, map[string]any{
			`version`: int64(2),
			`plugins.io.containerd.grpc.v1.cri.sandbox_image`:                                  "example/pause:1",
			`plugins.io.containerd.grpc.v1.cri.containerd.default_runtime_name`:                "runc",
			`plugins.io.containerd.grpc.v1.cri.containerd.runtimes.runc.options.SystemdCgroup`: true,
			`plugins.io.containerd.grpc.v1.cri.containerd.runtimes.gvisor.runtime_type`:        "io.containerd.runsc.v1",
			`plugins.io.containerd.grpc.v1.cri.containerd.runtimes.gvisor.options.TypeUrl`:     "io.containerd.runsc.v1.options",
			`plugins.io.containerd.grpc.v1.cri.containerd.runtimes.gvisor.options.ConfigPath`:  "/etc/containerd/runsc.toml",
			`plugins.io.containerd.grpc.v1.cri.cni.bin_dir`:                                    "/opt/cni/bin",
			`plugins.io.containerd.grpc.v1.cri.cni.conf_dir`:                                   "/etc/cni/net.d",
			`plugins.io.containerd.grpc.v1.cri.registry.config_path`:                           "/etc/containerd/certs.d",
		}},
		{Target{ConfigVersion: 3, Minor: 0}, map[string]any{
			`version`: int64(3),
			`plugins.io.containerd.cri.v1.images.pinned_images.sandbox`:                           "example/pause:1",
			`plugins.io.containerd.cri.v1.images.registry.config_path`:                            "/etc/containerd/certs.d",
			`plugins.io.containerd.cri.v1.runtime.containerd.default_runtime_name`:                "runc",
			`plugins.io.containerd.cri.v1.runtime.containerd.runtimes.runc.options.SystemdCgroup`: false,
			`plugins.io.containerd.cri.v1.runtime.containerd.runtimes.gvisor.options.TypeUrl`:     "io.containerd.runsc.v1.options",
			`plugins.io.containerd.cri.v1.runtime.cni.bin_dir`:                                    "/opt/cni/bin",
			`plugins.io.containerd.cri.v1.runtime.cni.conf_dir`:                                   "/etc/cni/net.d",
		}},
		{Target{ConfigVersion: 3, Minor: 1}, map[string]any{
			`plugins.io.containerd.cri.v1.runtime.cni.bin_dirs`: []any{"/opt/cni/bin"},
			`plugins.io.containerd.cri.v1.runtime.cni.bin_dir`:  nil,
		}},
		{Target{ConfigVersion: 4, Minor: 4}, map[string]any{
			`version`: int64(4),
			`grpc`:    nil,
			`plugins.io.containerd.server.v1.grpc.address`:                                    "/run/containerd/containerd.sock",
			`plugins.io.containerd.server.v1.ttrpc.address`:                                   "/run/containerd/containerd.sock.ttrpc",
			`plugins.io.containerd.cri.v1.images.pinned_images.sandbox`:                       "example/pause:1",
			`plugins.io.containerd.cri.v1.runtime.cni.bin_dirs`:                               []any{"/opt/cni/bin"},
			`plugins.io.containerd.cri.v1.runtime.containerd.runtimes.gvisor.options.TypeUrl`: "io.containerd.runsc.v1.options",
		}},
	}
	for _, tt := range tests {
		data, err := Render(n.Containerd, tt.target)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := toml.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		for p, want := range tt.paths {
			got := lookup(doc, p)
			if !equal(got, want) {
				t.Errorf("v%d.%d: %s = %#v, want %#v", tt.target.ConfigVersion, tt.target.Minor, p, got, want)
			}
		}
	}
}

// lookup follows a dotted path whose plugin ids contain dots themselves.
func lookup(doc map[string]any, p string) any {
	var cur any = doc
	for p != "" {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		// The longest key that prefixes the remaining path wins.
		best := ""
		for k := range m {
			if (p == k || strings.HasPrefix(p, k+".")) && len(k) > len(best) {
				best = k
			}
		}
		if best == "" {
			return nil
		}
		cur, p = m[best], strings.TrimPrefix(strings.TrimPrefix(p, best), ".")
	}
	return cur
}

func equal(a, b any) bool {
	as, aok := a.([]any)
	bs, bok := b.([]any)
	if aok && bok {
		if len(as) != len(bs) {
			return false
		}
		for i := range as {
			if as[i] != bs[i] {
				return false
			}
		}
		return true
	}
	return a == b
}

func TestMergePatch(t *testing.T) {
	tests := []struct{ target, patch, want string }{
		{`a = 1`, `b = 2`, "a = 1\nb = 2\n"},
		{`[t]
x = 1
y = 2`, `[t]
y = 3`, "[t]\nx = 1\ny = 3\n"},
		{`[t]
x = 1`, `t = 5`, "t = 5\n"},
		{`a = [1, 2]`, `a = [3]`, "a = [3]\n"},
	}
	for _, tt := range tests {
		var target, patch map[string]any
		toml.Unmarshal([]byte(tt.target), &target)
		toml.Unmarshal([]byte(tt.patch), &patch)
		got, _ := toml.Marshal(MergePatch(target, patch))
		if string(got) != tt.want {
			t.Errorf("merge %q with %q = %q, want %q", tt.target, tt.patch, got, tt.want)
		}
	}
	// A nil value (null in a YAML patch) deletes the key.
	got := MergePatch(map[string]any{"a": int64(1), "b": map[string]any{"c": int64(2), "d": int64(3)}},
		map[string]any{"a": nil, "b": map[string]any{"c": nil}})
	out, _ := toml.Marshal(got)
	if string(out) != "[b]\nd = 3\n" {
		t.Errorf("null deletes: got %q", out)
	}
}

func stageEnv(t *testing.T, src string) (*plan.Env, string) {
	t.Helper()
	dir := t.TempDir()
	root, err := host.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	doc, err := spec.Load("node.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return &plan.Env{Spec: doc.Spec, Doc: doc, Root: root, Changes: plan.NewChangeSet()}, dir
}

func applyAll(t *testing.T, env *plan.Env) []*plan.Action {
	t.Helper()
	actions, err := Stage{}.Plan(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range actions {
		if a.Op.Changes() {
			if err := a.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	return actions
}

const stageSpec = `apiVersion: nodeprov/v1alpha1
kind: Node
components: {containerd: {version: 2.1.4}}
containerd:
  cgroupDriver: systemd
  runtimes:
    gvisor: {type: io.containerd.runsc.v1, runscConfig: {network: none}}
  registries:
    docker.io: {mirrors: [{host: "https://mirror.example:5000"}]}
  proxy: {http: "http://user:pw@proxy:3128", noProxy: [localhost]}
`

func TestStageConvergesAndLeavesOperatorFilesAlone(t *testing.T) {
	env, dir := stageEnv(t, stageSpec)
	first := applyAll(t, env)
	var resources []string
	for _, a := range first {
		resources = append(resources, a.Resource)
	}
	want := "config /etc/containerd/config.toml|registry docker.io|runsc config /etc/containerd/runsc.toml|proxy drop-in " + ProxyDropin + "|crictl /etc/crictl.yaml"
	if got := strings.Join(resources, "|"); got != want {
		t.Fatalf("actions %s, want %s", got, want)
	}
	st, _ := os.Stat(filepath.Join(dir, ProxyDropin))
	if st == nil || st.Mode().Perm() != 0o640 {
		t.Errorf("proxy drop-in with credentials must be 0640, is %v", st)
	}
	for _, a := range applyAll(t, env) {
		if a.Op != plan.OpNone {
			t.Errorf("re-apply: %s is %s", a.Resource, a.Op)
		}
	}

	// An operator's drop-in in conf.d is never touched.
	dropin := filepath.Join(dir, "etc/containerd/conf.d/local.toml")
	os.MkdirAll(filepath.Dir(dropin), 0o755)
	os.WriteFile(dropin, []byte("[debug]\nlevel = 'debug'\n"), 0o644)
	applyAll(t, env)
	if b, _ := os.ReadFile(dropin); string(b) != "[debug]\nlevel = 'debug'\n" {
		t.Errorf("operator drop-in changed: %q", b)
	}

	// Without the marker the config is the operator's: reported, not written.
	cfg := filepath.Join(dir, ConfigPath)
	b, _ := os.ReadFile(cfg)
	taken := strings.TrimPrefix(string(b), Marker+"\n")
	os.WriteFile(cfg, []byte(taken), 0o644)
	actions := applyAll(t, env)
	if actions[0].Op != plan.OpUnmanaged {
		t.Errorf("config without marker: %s, want unmanaged", actions[0].Op)
	}
	if after, _ := os.ReadFile(cfg); string(after) != taken {
		t.Error("nodeprov overwrote a config without its marker")
	}
}

// TestPlanShowsExactlyTheChangedOption: changing one runtime option shows
// a TOML diff of that change and nothing else.
func TestPlanShowsExactlyTheChangedOption(t *testing.T) {
	env, _ := stageEnv(t, stageSpec)
	applyAll(t, env)
	env.Spec.Containerd.Runtimes["gvisor"] = spec.Runtime{Type: "io.containerd.runsc.v1", ConfigPath: "/etc/containerd/runsc-alt.toml", RunscConfig: map[string]string{"network": "none"}}
	actions, err := Stage{}.Plan(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	cfg := actions[0]
	if cfg.Op != plan.OpUpdate {
		t.Fatalf("config: %s", cfg.Op)
	}
	var changed []string
	for _, l := range strings.Split(cfg.Diff, "\n") {
		if (strings.HasPrefix(l, "+") || strings.HasPrefix(l, "-")) && !strings.HasPrefix(l, "+++") && !strings.HasPrefix(l, "---") {
			changed = append(changed, l)
		}
	}
	want := []string{
		"-            ConfigPath = '/etc/containerd/runsc.toml'",
		"+            ConfigPath = '/etc/containerd/runsc-alt.toml'",
	}
	if strings.Join(changed, "\n") != strings.Join(want, "\n") {
		t.Errorf("diff changes:\n%s\nwant:\n%s\nfull diff:\n%s", strings.Join(changed, "\n"), strings.Join(want, "\n"), cfg.Diff)
	}
}

func TestResolveTargetFromComponent(t *testing.T) {
	for _, tt := range []struct {
		version, configVersion string
		want                   Target
	}{
		{"1.7.27", "auto", Target{ConfigVersion: 2}},
		{"2.0.5", "auto", Target{ConfigVersion: 3, Minor: 0}},
		{"2.1.4", "auto", Target{ConfigVersion: 3, Minor: 1}},
		{"2.1.4", "2", Target{ConfigVersion: 2}},
		{"2.3.7", "auto", Target{ConfigVersion: 3, Minor: 3}},
		{"2.4.2", "auto", Target{ConfigVersion: 4, Minor: 4}},
		{"2.4.2", "3", Target{ConfigVersion: 3, Minor: 4}},
	} {
		env, _ := stageEnv(t, "apiVersion: nodeprov/v1alpha1\nkind: Node\ncomponents: {containerd: {version: "+tt.version+"}}\ncontainerd: {configVersion: \""+tt.configVersion+"\", cgroupDriver: cgroupfs}\n")
		got, err := ResolveTarget(context.Background(), env)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s/%s: %+v %v, want %+v", tt.version, tt.configVersion, got, err, tt.want)
		}
	}
}
