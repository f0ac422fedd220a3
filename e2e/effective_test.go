package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// effectiveDump is what containerd loads for a root's /etc/containerd:
// `containerd config dump` in a mount namespace where the root's
// /etc/containerd is bind-mounted at /etc/containerd (imports are absolute
// paths) and /run is a private tmpfs (containerd 2.x creates
// /run/containerd whatever its state directory).
func effectiveDump(t *testing.T, containerdBin, root string) map[string]any {
	t.Helper()
	script := `mount --bind "$1/etc/containerd" /etc/containerd && mount -t tmpfs -o mode=0755 nodeprov-test-run /run && exec "$0" --config /etc/containerd/config.toml config dump`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, containerdBin, root)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("containerd config dump: %v\n%s%s", err, out, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("containerd config dump said: %s", stderr.String())
	}
	var doc map[string]any
	if err := toml.Unmarshal(out, &doc); err != nil {
		t.Fatalf("config dump is not TOML: %v\n%s", err, out)
	}
	return doc
}

// TestEffectiveConfigWithDropins: what the real containerd (Debian's 1.6
// with a version 2 config, 2.1 built from modules with version 3) loads
// from nodeprov's config plus an operator's drop-ins keeps the spec's
// runtimes, SystemdCgroup, sandbox image, CNI directories and registry
// config_path, and has what each drop-in adds: a runtime, a CRI scalar, a
// non-CRI plugin setting. Adding or editing a drop-in is drift that names
// it. On 1.6 the drop-in that adds a runtime used to wipe the CRI section.
func TestEffectiveConfigWithDropins(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat("/etc/containerd"); err != nil {
		t.Fatalf("/etc/containerd (from Debian's containerd package, installed by make test) is the bind-mount target: %v", err)
	}
	type containerdUnderTest struct {
		name, bin, version string
		runtime, images    string // plugin ids of runtimes and images
	}
	all := []containerdUnderTest{{"containerd 1.6 (Debian)", "containerd", "2", "io.containerd.grpc.v1.cri", "io.containerd.grpc.v1.cri"}}
	for _, rel := range containerd2Releases {
		bin, _ := containerd2Binaries(t, rel.version)
		all = append(all, containerdUnderTest{"containerd " + rel.version, bin, fmt.Sprint(rel.configVersion), "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images"})
	}
	for _, ct := range all {
		t.Run(ct.name, func(t *testing.T) {
			header := "version = " + ct.version + "\n"
			// The operator's drop-ins, written for this version's tables.
			dropins := map[string]string{
				"50-runtime.toml": header + fmt.Sprintf("[plugins.%q.containerd.runtimes.operatorrt]\nruntime_type = \"io.containerd.runc.v2\"\n", ct.runtime),
				"60-scalar.toml":  header + fmt.Sprintf("[plugins.%q]\nmax_container_log_line_size = 32768\n", ct.runtime),
				"70-other.toml":   header + "[plugins.\"io.containerd.gc.v1.scheduler\"]\npause_threshold = 0.05\n",
			}
			spec := writeSpec(t, fmt.Sprintf(`apiVersion: nodeprov/v1alpha1
kind: Node
containerd:
  configVersion: %q
  cgroupDriver: systemd
  sandboxImage: registry.k8s.io/pause:3.9
  runtimes:
    runsc: {type: io.containerd.runc.v2, binaryName: /usr/bin/runsc}
  registries:
    docker.io: {mirrors: [{host: "https://127.0.0.1:1"}]}
  cni: {network: none, binDir: /opt/test-cni/bin, confDir: /etc/test-cni/net.d}
`, ct.version))
			for _, step := range []struct {
				name  string
				files []string // drop-ins present
			}{
				{"no drop-in", nil},
				{"a runtime", []string{"50-runtime.toml"}},
				{"a runtime and a CRI scalar", []string{"50-runtime.toml", "60-scalar.toml"}},
				{"all three", []string{"50-runtime.toml", "60-scalar.toml", "70-other.toml"}},
				{"only a non-CRI plugin", []string{"70-other.toml"}},
			} {
				t.Run(step.name, func(t *testing.T) {
					root := sandbox(t)
					if r := runNodeprov(t, "", "apply", "--root", root, spec); r.code != 0 {
						t.Fatalf("apply:\n%s", r)
					}
					dir := filepath.Join(root, "etc/containerd/conf.d")
					if err := os.MkdirAll(dir, 0o755); err != nil {
						t.Fatal(err)
					}
					for _, f := range step.files {
						if err := os.WriteFile(filepath.Join(dir, f), []byte(dropins[f]), 0o644); err != nil {
							t.Fatal(err)
						}
						// A new drop-in is drift, named in the report.
						r := runNodeprov(t, "", "check", "--root", root, spec)
						if r.code != 3 || !strings.Contains(r.stdout, f) {
							t.Errorf("check after adding %s: exit %d, want 3 naming it\n%s", f, r.code, r)
						}
					}
					if r := runNodeprov(t, "", "apply", "--root", root, spec); r.code != 0 {
						t.Fatalf("apply with drop-ins:\n%s", r)
					}
					if r := runNodeprov(t, "", "check", "--root", root, spec); r.code != 0 {
						t.Errorf("check after apply: exit %d\n%s", r.code, r)
					}
					doc := effectiveDump(t, ct.bin, root)
					want := map[string][]any{
						"runc SystemdCgroup": {true, "plugins", ct.runtime, "containerd", "runtimes", "runc", "options", "SystemdCgroup"},
						"runsc BinaryName":   {"/usr/bin/runsc", "plugins", ct.runtime, "containerd", "runtimes", "runsc", "options", "BinaryName"},
						"default runtime":    {"runc", "plugins", ct.runtime, "containerd", "default_runtime_name"},
						"CNI conf_dir":       {"/etc/test-cni/net.d", "plugins", ct.runtime, "cni", "conf_dir"},
						"registry":           {"/etc/containerd/certs.d", "plugins", ct.images, "registry", "config_path"},
					}
					if ct.version == "2" {
						want["sandbox image"] = []any{"registry.k8s.io/pause:3.9", "plugins", ct.images, "sandbox_image"}
						want["CNI bin_dir"] = []any{"/opt/test-cni/bin", "plugins", ct.runtime, "cni", "bin_dir"}
					} else {
						want["sandbox image"] = []any{"registry.k8s.io/pause:3.9", "plugins", ct.images, "pinned_images", "sandbox"}
						want["CNI bin_dirs"] = []any{"[/opt/test-cni/bin]", "plugins", ct.runtime, "cni", "bin_dirs"}
					}
					has := func(f string) bool { return strings.Contains(strings.Join(step.files, " "), f) }
					if has("50-runtime.toml") {
						want["operator's runtime"] = []any{"io.containerd.runc.v2", "plugins", ct.runtime, "containerd", "runtimes", "operatorrt", "runtime_type"}
					}
					if has("60-scalar.toml") {
						want["operator's CRI scalar"] = []any{"32768", "plugins", ct.runtime, "max_container_log_line_size"}
					}
					if has("70-other.toml") {
						want["operator's gc setting"] = []any{"0.05", "plugins", "io.containerd.gc.v1.scheduler", "pause_threshold"}
					}
					for what, w := range want {
						keys := make([]string, len(w)-1)
						for i, k := range w[1:] {
							keys[i] = k.(string)
						}
						if got := fmt.Sprint(tomlPath(doc, keys...)); got != fmt.Sprint(w[0]) {
							t.Errorf("%s: %s = %s, want %v", what, strings.Join(keys, "."), got, w[0])
						}
					}
					// Editing a drop-in is drift too.
					if len(step.files) > 0 {
						f := filepath.Join(dir, step.files[0])
						if err := os.WriteFile(f, []byte(dropins[step.files[0]]+"# edited\n"), 0o644); err != nil {
							t.Fatal(err)
						}
						if r := runNodeprov(t, "", "check", "--root", root, spec); r.code != 3 || !strings.Contains(r.stdout, step.files[0]) {
							t.Errorf("check after editing %s: exit %d, want 3 naming it\n%s", step.files[0], r.code, r)
						}
					}
				})
			}
		})
	}
}

// TestKubeletMustAgree: a kubelet configuration in the root that disagrees
// with containerd's cgroup driver fails plan naming both files and both
// values; preflight.ignore turns it into a warning.
func TestKubeletMustAgree(t *testing.T) {
	requireRoot(t)
	root := sandbox(t)
	kubelet := filepath.Join(root, "var/lib/kubelet/config.yaml")
	if err := os.MkdirAll(filepath.Dir(kubelet), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kubelet, []byte("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: cgroupfs\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := "apiVersion: nodeprov/v1alpha1\nkind: Node\ncontainerd: {configVersion: \"3\", cgroupDriver: systemd}\n"
	spec := writeSpec(t, src)
	r := runNodeprov(t, "", "plan", "--root", root, spec)
	wantRefused(t, r, 1, "/var/lib/kubelet/config.yaml sets cgroupDriver: cgroupfs", "containerd with systemd (containerd.cgroupDriver: systemd in "+spec+")")
	ignored := writeSpec(t, src+"preflight: {ignore: [kubelet.cgroup-driver]}\n")
	r = runNodeprov(t, "", "plan", "-o", "json", "--root", root, ignored)
	if r.code != 0 || !strings.Contains(r.stdout, `ignored by preflight.ignore \"kubelet.cgroup-driver\"`) {
		t.Errorf("plan with the check ignored: want exit 0 and a warning\n%s", r)
	}
}
