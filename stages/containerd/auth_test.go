package containerd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

const authSpec = `apiVersion: nodeprov/v1alpha1
kind: Node
components: {containerd: {version: 2.1.4}}
containerd:
  cgroupDriver: cgroupfs
  registries:
    registry.example.com:
      auth: {username: robot, passwordFile: /etc/nodeprov/registry-password}
    docker.io:
      mirrors:
        - host: https://mirror.internal:5000
          auth: {identityToken: "tok-INLINE-5ecret"}
`

// Registry credentials land where the CRI plugin reads them, for the host
// it contacts (the mirror; docker.io's upstream is registry-1.docker.io),
// in a config.toml that is 0600, and no plan diff shows them.
func TestRegistryAuth(t *testing.T) {
	for _, tt := range []struct {
		version, prefix string
	}{
		{"1.7.27", "plugins.io.containerd.grpc.v1.cri.registry.configs."},
		{"2.1.4", "plugins.io.containerd.cri.v1.images.registry.configs."},
	} {
		t.Run(tt.version, func(t *testing.T) {
			env, dir := stageEnv(t, strings.Replace(authSpec, "2.1.4", tt.version, 1))
			secret := filepath.Join(dir, "etc/nodeprov/registry-password")
			if err := os.MkdirAll(filepath.Dir(secret), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(secret, []byte("file-PASS-5ecret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			actions := applyAll(t, env)
			for _, a := range actions {
				for _, s := range []string{a.Detail, a.Diff} {
					if strings.Contains(s, "5ecret") {
						t.Errorf("%s shows a secret:\n%s", a.Resource, s)
					}
				}
				if a.Resource == "config "+ConfigPath && !strings.Contains(a.Diff, `password = '<redacted>'`) {
					t.Errorf("config diff does not show the redacted password:\n%s", a.Diff)
				}
			}
			st, err := os.Stat(filepath.Join(dir, ConfigPath))
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("config.toml: %v %v, want mode 0600", st.Mode(), err)
			}
			data, _ := os.ReadFile(filepath.Join(dir, ConfigPath))
			var doc map[string]any
			if err := toml.Unmarshal(data, &doc); err != nil {
				t.Fatal(err)
			}
			for p, want := range map[string]any{
				`registry.example.com.auth.username`:      "robot",
				`registry.example.com.auth.password`:      "file-PASS-5ecret",
				`mirror.internal:5000.auth.identitytoken`: "tok-INLINE-5ecret",
				`mirror.internal:5000.auth.username`:      nil,
				`registry-1.docker.io.auth.password`:      nil,
				`registry.example.com.auth.identitytoken`: nil,
				`mirror.internal:5000.auth.password`:      nil,
			} {
				if got := lookup(doc, tt.prefix+p); !equal(got, want) {
					t.Errorf("%s%s = %#v, want %#v", tt.prefix, p, got, want)
				}
			}
			// A changed secret is drift, shown without the secret.
			if err := os.WriteFile(secret, []byte("rotated-5ecret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			again, err := Stage{}.Plan(context.Background(), env)
			if err != nil {
				t.Fatal(err)
			}
			if a := again[0]; !a.Op.Changes() || a.Diff != "(only secret values changed; not shown)\n" {
				t.Errorf("rotated password: op %s, diff %q", a.Op, a.Diff)
			}
		})
	}
}

func TestRegistryAuthErrors(t *testing.T) {
	for name, tt := range map[string]struct{ spec, file, want string }{
		"missing password file": {`registries: {r.example: {auth: {username: u, passwordFile: /etc/pw}}}`, "",
			`containerd.registries["r.example"].auth.passwordFile: /etc/pw does not exist in the target root`},
		"empty password file": {`registries: {r.example: {auth: {username: u, passwordFile: /etc/pw}}}`, "\n",
			`/etc/pw must hold the secret on one line`},
		"two credentials for one host": {`registries: {a.example: {mirrors: [{host: "https://m:1", auth: {identityToken: x}}]}, b.example: {mirrors: [{host: "https://m:1", auth: {identityToken: y}}]}}`, "",
			`give different credentials for m:1`},
	} {
		t.Run(name, func(t *testing.T) {
			env, dir := stageEnv(t, "apiVersion: nodeprov/v1alpha1\nkind: Node\ncomponents: {containerd: {version: 2.1.4}}\ncontainerd:\n  "+tt.spec+"\n")
			if tt.file != "" {
				if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "etc/pw"), []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Stage{}.Plan(context.Background(), env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// A patch that adds a secret key makes config.toml 0600 too, and its diff
// shows the value as <redacted>.
func TestPatchSecretMakesConfigPrivate(t *testing.T) {
	env, dir := stageEnv(t, "apiVersion: nodeprov/v1alpha1\nkind: Node\ncomponents: {containerd: {version: 1.7.27}}\ncontainerd:\n  patch: |\n    [plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"r.example\".auth]\n    auth = \"dTpQQVRDSC01ZWNyZXQ=\"\n")
	actions := applyAll(t, env)
	if strings.Contains(actions[0].Diff, "dTpQQVRDSC01ZWNyZXQ") || !strings.Contains(actions[0].Diff, "auth = '<redacted>'") {
		t.Errorf("diff:\n%s", actions[0].Diff)
	}
	if st, err := os.Stat(filepath.Join(dir, ConfigPath)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config.toml mode %v %v, want 0600", st.Mode(), err)
	}
}

// The plan says where the sandbox image lands for the chosen version.
func TestPlanNamesSandboxImageKey(t *testing.T) {
	for version, key := range map[string]string{
		"1.7.27": `plugins."io.containerd.grpc.v1.cri".sandbox_image`,
		"2.1.4":  `plugins."io.containerd.cri.v1.images".pinned_images.sandbox`,
	} {
		env, _ := stageEnv(t, "apiVersion: nodeprov/v1alpha1\nkind: Node\ncomponents: {containerd: {version: "+version+"}}\ncontainerd: {sandboxImage: mirror.internal:5000/pause:3.10}\n")
		for i := 0; i < 2; i++ { // planned, then unchanged
			actions := applyAll(t, env)
			if want := "sandbox image mirror.internal:5000/pause:3.10 at " + key; !strings.Contains(actions[0].Detail, want) {
				t.Errorf("%s: config detail %q lacks %q", version, actions[0].Detail, want)
			}
		}
	}
}

// A patch that replaces or deletes a value nodeprov renders from the spec
// is a warning naming the key and both values; one that only adds is not.
func TestPatchOverridesWarn(t *testing.T) {
	env, _ := stageEnv(t, `apiVersion: nodeprov/v1alpha1
kind: Node
components: {containerd: {version: 1.7.27}}
containerd:
  cgroupDriver: systemd
  sandboxImage: registry.k8s.io/pause:3.10
  patch:
    imports: null
    plugins:
      io.containerd.grpc.v1.cri:
        sandbox_image: mirror.internal/pause:3.10
        enable_unprivileged_ports: true
        containerd: {runtimes: {runc: {options: {SystemdCgroup: false}}}}
`)
	applyAll(t, env)
	want := []string{
		`containerd.patch overrides a value nodeprov renders from the spec (the patch wins): imports: deleted`,
		`containerd.patch overrides a value nodeprov renders from the spec (the patch wins): plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options.SystemdCgroup: true -> false`,
		`containerd.patch overrides a value nodeprov renders from the spec (the patch wins): plugins."io.containerd.grpc.v1.cri".sandbox_image: 'registry.k8s.io/pause:3.10' -> 'mirror.internal/pause:3.10'`,
	}
	if got := env.Warnings(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
