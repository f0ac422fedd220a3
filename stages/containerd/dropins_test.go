package containerd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// dropinEnv is a stage environment with the given drop-ins in the root's
// conf.d, for containerd version (1.7.x: config version 2; 2.x: 3).
func dropinEnv(t *testing.T, version, specExtra string, dropins map[string]string) func() ([]string, map[string]any, string) {
	t.Helper()
	src := "apiVersion: nodeprov/v1alpha1\nkind: Node\ncomponents: {containerd: {version: " + version + "}}\ncontainerd:\n  cgroupDriver: systemd\n" + specExtra
	env, dir := stageEnv(t, src)
	for name, body := range dropins {
		p := filepath.Join(dir, DropinDir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return func() ([]string, map[string]any, string) {
		t.Helper()
		applyAll(t, env)
		data, err := os.ReadFile(filepath.Join(dir, ConfigPath))
		if err != nil {
			t.Fatal(err)
		}
		var cfg map[string]any
		if err := toml.Unmarshal(data, &cfg); err != nil {
			t.Fatal(err)
		}
		return env.Warnings(), cfg, string(data)
	}
}

func TestDropins(t *testing.T) {
	const addRuntime = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.operatorrt]\nruntime_type = \"io.containerd.runc.v2\"\n"
	const setImage = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"mirror.internal/pause:3.10\"\n"
	const otherPlugin = "version = 2\n[plugins.\"io.containerd.internal.v1.opt\"]\npath = \"/opt/operator\"\n"
	const cri = `plugins.io.containerd.grpc.v1.cri.`
	for _, tt := range []struct {
		name, specExtra string
		dropins         map[string]string
		want            map[string]any
		warnings        []string
	}{
		{name: "a drop-in that adds a runtime is merged; nodeprov's runtimes stay",
			dropins: map[string]string{"50-operator.toml": addRuntime},
			want: map[string]any{
				cri + "containerd.runtimes.operatorrt.runtime_type":    "io.containerd.runc.v2",
				cri + "containerd.runtimes.runc.options.SystemdCgroup": true,
				cri + "sandbox_image":                                  "registry.k8s.io/pause:3.10",
				"imports":                                              []any{},
			}},
		{name: "a CRI scalar over a default wins silently",
			dropins: map[string]string{"50-image.toml": setImage},
			want:    map[string]any{cri + "sandbox_image": "mirror.internal/pause:3.10"}},
		{name: "a CRI scalar over a value the spec sets wins, with a warning",
			specExtra: "  sandboxImage: registry.k8s.io/pause:3.9\n",
			dropins:   map[string]string{"50-image.toml": setImage},
			want:      map[string]any{cri + "sandbox_image": "mirror.internal/pause:3.10"},
			warnings:  []string{`/etc/containerd/conf.d/50-image.toml sets plugins."io.containerd.grpc.v1.cri".sandbox_image: 'registry.k8s.io/pause:3.9' -> 'mirror.internal/pause:3.10': the drop-in wins over the spec's value`}},
		{name: "a drop-in without CRI tables stays an import (glob)",
			dropins: map[string]string{"10-opt.toml": otherPlugin},
			want:    map[string]any{"imports": []any{DropinGlob}, "plugins.io.containerd.internal.v1.opt.path": nil}},
		{name: "with a merged drop-in, the others are imported by name",
			dropins: map[string]string{"10-opt.toml": otherPlugin, "50-operator.toml": addRuntime},
			want:    map[string]any{"imports": []any{"/etc/containerd/conf.d/10-opt.toml"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			run := dropinEnv(t, "1.7.27", tt.specExtra, tt.dropins)
			warnings, cfg, text := run()
			for p, want := range tt.want {
				if got := lookup(cfg, p); !equal(got, want) {
					t.Errorf("%s = %#v, want %#v\n%s", p, got, want, text)
				}
			}
			var own []string
			for _, w := range warnings {
				if strings.HasPrefix(w, "containerd: ") {
					own = append(own, strings.TrimPrefix(w, "containerd: "))
				}
			}
			if strings.Join(own, "\n") != strings.Join(tt.warnings, "\n") {
				t.Errorf("warnings %q, want %q", own, tt.warnings)
			}
			for name := range tt.dropins {
				if !strings.Contains(text, "# drop-in /etc/containerd/conf.d/"+name+" sha256:") {
					t.Errorf("the config does not name drop-in %s:\n%s", name, text)
				}
			}
		})
	}
}

// Adding, editing or removing a drop-in changes the managed config, and
// the plan names the drop-in.
func TestDropinChangeIsDrift(t *testing.T) {
	env, dir := stageEnv(t, "apiVersion: nodeprov/v1alpha1\nkind: Node\ncomponents: {containerd: {version: 2.1.4}}\ncontainerd: {cgroupDriver: systemd}\n")
	applyAll(t, env)
	p := filepath.Join(dir, DropinDir, "50-operator.toml")
	os.MkdirAll(filepath.Dir(p), 0o755)
	for i, body := range []string{
		"[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.x]\nruntime_type = \"io.containerd.runc.v2\"\n",
		"[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.y]\nruntime_type = \"io.containerd.runc.v2\"\n",
		"", // removed
	} {
		if body == "" {
			os.Remove(p)
		} else if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		actions, err := Stage{}.Plan(context.Background(), env)
		if err != nil {
			t.Fatal(err)
		}
		a := actions[0]
		if !a.Op.Changes() || !strings.Contains(a.Diff, "50-operator.toml") {
			t.Errorf("step %d: config %s, diff:\n%s", i, a.Op, a.Diff)
		}
		applyAll(t, env)
	}
}

// An imported drop-in without a version line is read by containerd 2.x as
// version 1 and migrated at every start: a warning says so.
func TestDropinWithoutVersionWarns(t *testing.T) {
	run := dropinEnv(t, "2.1.4", "", map[string]string{"10-gc.toml": "[plugins.\"io.containerd.gc.v1.scheduler\"]\npause_threshold = 0.05\n"})
	warnings, _, _ := run()
	want := "containerd: drop-in /etc/containerd/conf.d/10-gc.toml has no version line: containerd 2.x reads it as a version 1 file and migrates it at every start; add version = 3"
	if strings.Join(warnings, "\n") != want {
		t.Errorf("warnings %q, want %q", warnings, want)
	}
}

func TestDropinErrors(t *testing.T) {
	for name, tt := range map[string]struct{ version, body, want string }{
		"not TOML": {"1.7.27", "[plugins\nx = 1\n", "containerd drop-in /etc/containerd/conf.d/50-x.toml:1:"},
		"legacy registry mirrors": {"1.7.27", "[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\nendpoint = [\"https://m\"]\n",
			`sets plugins."io.containerd.grpc.v1.cri".registry.mirrors, which containerd refuses next to the config_path nodeprov renders: move the mirrors to /etc/containerd/certs.d/<host>/hosts.toml`},
		"legacy registry tls": {"2.1.4", "[plugins.\"io.containerd.cri.v1.images\".registry.configs.\"r:5000\".tls]\ninsecure_skip_verify = true\n",
			`registry.configs."r:5000".tls, which containerd refuses next to config_path`},
		"version 2 CRI drop-in for containerd 2": {"2.1.4", "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"x/p:1\"\n",
			`is config version 2 and sets the CRI plugin, but the managed config is version 3`},
	} {
		t.Run(name, func(t *testing.T) {
			env, dir := stageEnv(t, "apiVersion: nodeprov/v1alpha1\nkind: Node\ncomponents: {containerd: {version: "+tt.version+"}}\ncontainerd: {cgroupDriver: systemd}\n")
			p := filepath.Join(dir, DropinDir, "50-x.toml")
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, []byte(tt.body), 0o644)
			if _, err := (Stage{}).Plan(context.Background(), env); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
