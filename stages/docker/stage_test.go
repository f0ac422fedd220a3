package docker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

const header = "apiVersion: nodeprov/v1alpha1\nkind: Node\n"

// stageEnv loads src into an offline env on a fresh root that has an
// /etc/group, and with systemd installed when withSystemd.
func stageEnv(t *testing.T, src string, withSystemd bool) (*plan.Env, string) {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc/group"), []byte("root:x:0:\n"), 0o644)
	if withSystemd {
		os.MkdirAll(filepath.Join(dir, "usr/lib/systemd"), 0o755)
		os.WriteFile(filepath.Join(dir, "usr/lib/systemd/systemd"), nil, 0o755)
	}
	root, err := host.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	doc, err := spec.Load("node.yaml", []byte(header+src))
	if err != nil {
		t.Fatal(err)
	}
	return &plan.Env{Spec: doc.Spec, Doc: doc, Root: root, Changes: plan.NewChangeSet()}, dir
}

// run plans the stage and applies what changes; it returns the actions.
func run(t *testing.T, env *plan.Env) []*plan.Action {
	t.Helper()
	actions, err := Stage{}.Plan(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range actions {
		if a.Op.Changes() {
			if err := a.Run(context.Background()); err != nil {
				t.Fatalf("%s: %v", a.Resource, err)
			}
		}
	}
	return actions
}

func ops(actions []*plan.Action) map[string]plan.Op {
	out := map[string]plan.Op{}
	for _, a := range actions {
		out[a.Resource] = a.Op
	}
	return out
}

func read(t *testing.T, dir, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, p))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDaemonJSON: daemon.json carries the node's cgroup driver (systemd in
// an image with systemd, cgroupfs without), the spec's mirrors and log
// settings, and docker.settings over them with a warning for each
// rendered key it replaces.
func TestDaemonJSON(t *testing.T) {
	src := `docker:
  registryMirrors: ["http://127.0.0.1:5000"]
  logOpts: {max-size: 10m}
  settings: {iptables: false, log-driver: local, features: {buildkit: true}}
`
	for _, withSystemd := range []bool{true, false} {
		env, dir := stageEnv(t, src, withSystemd)
		run(t, env)
		driver := map[bool]string{true: "systemd", false: "cgroupfs"}[withSystemd]
		want := `{
  "data-root": "/var/lib/docker",
  "exec-opts": [
    "native.cgroupdriver=` + driver + `"
  ],
  "features": {
    "buildkit": true
  },
  "iptables": false,
  "log-driver": "local",
  "log-opts": {
    "max-size": "10m"
  },
  "registry-mirrors": [
    "http://127.0.0.1:5000"
  ]
}
`
		if got := read(t, dir, DaemonConfig); got != want {
			t.Errorf("daemon.json (systemd %v):\n%s\nwant\n%s", withSystemd, got, want)
		}
		if w := strings.Join(env.Warnings(), "\n"); w != "docker.settings overrides log-driver, which nodeprov renders from the spec (the setting wins)" {
			t.Errorf("warnings: %q", w)
		}
	}
}

// TestDaemonJSONOwnership: daemon.json has no room for nodeprov's header,
// so a record says whose it is. An operator's file is left alone; one
// nodeprov wrote is converged, edits included; a second apply changes
// nothing.
func TestDaemonJSONOwnership(t *testing.T) {
	env, dir := stageEnv(t, "docker: {}\n", false)
	os.MkdirAll(filepath.Join(dir, "etc/docker"), 0o755)
	operator := "{\"debug\": true}\n"
	os.WriteFile(filepath.Join(dir, DaemonConfig), []byte(operator), 0o644)
	got := ops(run(t, env))
	if got["config "+DaemonConfig] != plan.OpUnmanaged || read(t, dir, DaemonConfig) != operator {
		t.Fatalf("operator's daemon.json: %v, now %q", got, read(t, dir, DaemonConfig))
	}

	os.Remove(filepath.Join(dir, DaemonConfig))
	if got := ops(run(t, env)); got["config "+DaemonConfig] != plan.OpCreate || got["group docker"] != plan.OpNone {
		t.Fatalf("first apply: %v", got)
	}
	ours := read(t, dir, DaemonConfig)
	for _, a := range run(t, env) {
		if a.Op != plan.OpNone {
			t.Errorf("second apply: %s %s (%s)", a.Op, a.Resource, a.Detail)
		}
	}
	os.WriteFile(filepath.Join(dir, DaemonConfig), []byte(operator), 0o644)
	actions := run(t, env)
	for _, a := range actions {
		if a.Resource == "config "+DaemonConfig && (a.Op != plan.OpUpdate || !strings.Contains(a.Detail, "edited since nodeprov wrote it")) {
			t.Errorf("edited daemon.json: %s %s", a.Op, a.Detail)
		}
	}
	if read(t, dir, DaemonConfig) != ours {
		t.Error("an edit of nodeprov's daemon.json was not converged")
	}

	// The record lost, the file as nodeprov writes it: adopted, and only
	// the record is written (no path under /etc/docker changes, so dockerd
	// does not restart).
	os.RemoveAll(filepath.Join(dir, plan.OwnedDir))
	for _, a := range run(t, env) {
		if a.Resource == "config "+DaemonConfig && (a.Op != plan.OpUpdate || len(a.Paths) != 1 || !strings.HasPrefix(a.Paths[0], plan.OwnedDir)) {
			t.Errorf("adoption: %s %v %s", a.Op, a.Paths, a.Detail)
		}
	}
	if got := ops(run(t, env)); got["config "+DaemonConfig] != plan.OpNone {
		t.Errorf("after adoption: %v", got)
	}
}

// TestDockerGroup: the sockets' group is created once, as a system group.
func TestDockerGroup(t *testing.T) {
	env, dir := stageEnv(t, "docker: {}\n", false)
	if got := ops(run(t, env)); got["group docker"] != plan.OpCreate {
		t.Fatalf("first apply: %v", got)
	}
	if g := read(t, dir, "/etc/group"); g != "root:x:0:\ndocker:x:999:\n" {
		t.Errorf("/etc/group:\n%s", g)
	}
	if got := ops(run(t, env)); got["group docker"] != plan.OpNone {
		t.Errorf("second apply: %v", got)
	}
}

// TestDockerCRICompanions: with docker.cri, crictl.yaml points at
// cri-dockerd and the bridge conflist goes to docker.cri.cni.confDir; the
// kubelet must agree with cri-dockerd, not containerd.
func TestDockerCRICompanions(t *testing.T) {
	src := `components:
  containerd: {version: 2.1.4}
  cni: {version: 1.7.1}
docker:
  cri: {cni: {confDir: /etc/cni/docker.d, subnet: 10.77.0.0/16}}
`
	env, dir := stageEnv(t, src, true)
	run(t, env)
	if got := read(t, dir, "/etc/crictl.yaml"); !strings.Contains(got, "runtime-endpoint: unix:///run/cri-dockerd.sock\nimage-endpoint: unix:///run/cri-dockerd.sock\n") {
		t.Errorf("crictl.yaml:\n%s", got)
	}
	if got := read(t, dir, "/etc/cni/docker.d/10-nodeprov-bridge.conflist"); !strings.Contains(got, `"subnet": "10.77.0.0/16"`) {
		t.Errorf("conflist:\n%s", got)
	}

	env, dir = stageEnv(t, src, true)
	os.MkdirAll(filepath.Join(dir, "var/lib/kubelet"), 0o755)
	os.WriteFile(filepath.Join(dir, "var/lib/kubelet/config.yaml"), []byte("kind: KubeletConfiguration\ncgroupDriver: systemd\ncontainerRuntimeEndpoint: unix:///run/containerd/containerd.sock\n"), 0o644)
	_, err := Stage{}.Plan(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "kubelet.runtime-endpoint: /var/lib/kubelet/config.yaml sets containerRuntimeEndpoint: unix:///run/containerd/containerd.sock, but nodeprov configures cri-dockerd with unix:///run/cri-dockerd.sock (docker.cri.endpoint in node.yaml)") {
		t.Errorf("kubelet pointing at containerd on a Docker node: %v", err)
	}
}
