package e2e

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	art "github.com/nodeprov/nodeprov/e2e/artifacts"
)

// containerdUpgradeTo is the containerd 2.x release the in-node test
// upgrades Debian's 1.6 to: built from the module (with its shim), packed
// as containerd's release.
const containerdUpgradeTo = "v2.1.4"

// packContainerd2 lays out a containerd 2.x built from the module as
// containerd's release under dir/containerd/<v>/: the tarball with
// bin/containerd, bin/containerd-shim-runc-v2 and bin/ctr, and its
// .sha256sum. It returns the release directory relative to dir.
func packContainerd2(t *testing.T, dir, version string) string {
	t.Helper()
	containerd, ctr := containerd2Binaries(t, version)
	v := strings.TrimPrefix(version, "v")
	rel := "containerd/" + version
	file := filepath.Join(dir, rel, fmt.Sprintf("containerd-%s-linux-amd64.tar.gz", v))
	members := map[string]string{
		"bin/containerd":              containerd,
		"bin/ctr":                     ctr,
		"bin/containerd-shim-runc-v2": filepath.Join(filepath.Dir(containerd), "containerd-shim-runc-v2"),
	}
	if err := art.WriteTarGz(file, members); err != nil {
		t.Fatal(err)
	}
	sum, err := art.FileHash(file, sha256.New)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file+".sha256sum", []byte(sum+"  "+filepath.Base(file)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return rel
}

// nodePodsSpec is the spec of the in-node pods test: containerd (Debian's
// 1.6 from the release tree, or 2.x from extraURL when upgraded), runc,
// the CNI plugins and crictl; the runc handler with the node's cgroup
// driver (systemd: systemd is PID 1 there); registries mirrored to the
// test registry; sandboxImage as given.
//
// Two limits of the machine, as in TestDockerCRI: runc runs with
// NoNewKeyring (nspawn's seccomp filter refuses keyctl), and the CRI
// plugin's restrict_oom_score_adj is on (CAP_SYS_RESOURCE is withheld).
func nodePodsSpec(a *artifacts, url, extraURL, crictlRel, crictlSHA, containerd2Rel, sandboxImage string) string {
	components := art.ComponentsYAML(url, a.keyring, false)
	criPlugin, configVersion := "io.containerd.grpc.v1.cri", 2
	if containerd2Rel != "" {
		v := strings.TrimPrefix(containerdUpgradeTo, "v")
		block := fmt.Sprintf("  containerd:\n    version: %s\n    binaries: [%s]\n", art.ContainerdVersion, strings.Join(art.ContainerdBinaries, ", "))
		upgraded := fmt.Sprintf("  containerd:\n    version: %s\n    baseURL: %s/%s\n    binaries: [containerd, containerd-shim-runc-v2, ctr]\n", v, extraURL, containerd2Rel)
		components = strings.Replace(components, block, upgraded, 1)
		criPlugin, configVersion = "io.containerd.cri.v1.runtime", 3
	}
	return fmt.Sprintf(`apiVersion: nodeprov/v1alpha1
kind: Node
metadata: {name: pods-in-node}
%[1]s  crictl: {version: %[2]s, baseURL: "%[3]s/%[4]s", sha256: {amd64: %[5]s}}
containerd:
  configVersion: "%[6]d"
  sandboxImage: %[7]s
  runtimes:
    runc: {type: io.containerd.runc.v2, options: {NoNewKeyring: true}}
  registries:
    docker.io: {mirrors: [{host: "http://%[8]s"}]}
    registry.k8s.io: {mirrors: [{host: "http://%[8]s"}]}
  cni: {network: bridge, subnet: %[9]s}
  patch:
    plugins:
      %[10]s: {restrict_oom_score_adj: true}
units:
  - {name: containerd.service, enabled: true, state: started}
`, components, art.CrictlVersion, extraURL, crictlRel, crictlSHA, configVersion, sandboxImage, art.PodRegistry, art.PodSubnet, criPlugin)
}

// runPodScript starts, in the node, a runc pod (cgroup parent a systemd
// slice: the handler runs with SystemdCgroup) with a busybox container
// that writes a file and prints its address; it prints "pod <id>" and
// "ctr <id>".
const runPodScript = `set -e
mkdir -p /tmp/pod-logs
cat > /tmp/pod.json <<'EOF'
{"metadata": {"name": "pod-%[1]s", "namespace": "default", "uid": "uid-%[1]s", "attempt": 0},
 "log_directory": "/tmp/pod-logs", "linux": {"cgroup_parent": "nodeprov.slice"}}
EOF
cat > /tmp/ctr.json <<'EOF'
{"metadata": {"name": "busybox"}, "image": {"image": "docker.io/library/busybox:1.36"},
 "command": ["/bin/sh", "-c", "echo hello-from-%[1]s; ip -4 -o addr show dev eth0; echo written > /tmp/written; sleep 1000"],
 "log_path": "busybox-%[1]s.log", "linux": {}}
EOF
crictl pull docker.io/library/busybox:1.36 >/dev/null
pod=$(crictl runp --runtime runc /tmp/pod.json)
ctr=$(crictl create $pod /tmp/ctr.json /tmp/pod.json)
crictl start $ctr >/dev/null
for i in $(seq 100); do crictl exec $ctr cat /tmp/written 2>/dev/null | grep -q written && break; sleep 0.1; done
crictl logs $ctr | sed 's/^/logs: /'
echo "pod $pod"
echo "ctr $ctr"
`

// podState is what must not change about a running pod across a
// containerd restart: the sandbox and container ids, the container's start
// time, and that both run.
func podState(t *testing.T, n *node, pod, ctr string) string {
	t.Helper()
	return strings.TrimSpace(n.mustSh(t, fmt.Sprintf(
		`echo "sandbox $(crictl inspectp -o go-template --template '{{.status.id}} {{.status.state}}' %s)"; echo "container $(crictl inspect -o go-template --template '{{.status.id}} {{.status.state}} {{.status.startedAt}}' %s)"`,
		pod, ctr)))
}

func field(out, key string) string {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, key+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestPodsInNode is issue 14's proof under real systemd, in the
// nspawn-booted node (which can run containers: see bootOptions): a runc
// pod with SystemdCgroup, through the CRI of the containerd nodeprov
// installed, its images pulled through the mirror from a real registry.
// Then containerd is upgraded in place under that running pod, from
// Debian's 1.6 to 2.1 (built from the module, packed as containerd's
// release) and back: each time the binaries are replaced, the config is
// re-rendered for the version, containerd restarts exactly once, the
// pod's sandbox and container keep their ids and start time and keep
// running, and crictl works against the new daemon. Last, a new
// sandboxImage restarts containerd exactly once, and a new pod's sandbox
// uses it.
func TestPodsInNode(t *testing.T) {
	a := releaseArtifacts(t)
	extra := t.TempDir()
	crictlRel, crictlSHA, err := art.PackCrictl(extra, crictlBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	containerd2Rel := packContainerd2(t, extra, containerdUpgradeTo)

	root := newNodeRoot(t)
	ns := newNetns(t)
	url := a.serveIn(t, ns, "127.0.0.1:0", nil)
	extraURL := ns.serve(t, "127.0.0.1:0", http.FileServer(http.Dir(extra)))
	// pause:3.9 differs from pause:3.10 (another entrypoint), so the two
	// sandbox images have different ids.
	regDir := startRegistry(t, ns, []registryImage{
		{"library/busybox:1.36", []string{"/bin/sh"}},
		{"pause:3.10", pauseEntry},
		{"pause:3.9", append(append([]string(nil), pauseEntry[:2]...), pauseEntry[2]+" # 3.9")},
	})
	if err := ns.do(func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644) }); err != nil {
		t.Fatal(err)
	}
	n := bootNode(t, root, bootOptions{ns: ns, containers: true, args: []string{"--capability=CAP_NET_ADMIN"}})

	spec16 := nodePodsSpec(a, url, extraURL, crictlRel, crictlSHA, "", "registry.k8s.io/pause:3.10")
	spec2 := nodePodsSpec(a, url, extraURL, crictlRel, crictlSHA, containerd2Rel, "registry.k8s.io/pause:3.10")
	if r, _ := applyIn(t, n, spec16); r.code != 0 {
		t.Fatalf("apply:\n%s\n%s", r, n.journal(t, "containerd.service", 30))
	}
	if got := n.mustSh(t, "grep -c 'SystemdCgroup = true' /etc/containerd/config.toml"); strings.TrimSpace(got) == "0" {
		t.Errorf("the runc handler does not use the systemd cgroup driver under systemd")
	}
	out := n.sh(t, fmt.Sprintf(runPodScript, "first"))
	if out.code != 0 {
		t.Fatalf("a pod in the node:\n%s\n%s", out, n.journal(t, "containerd.service", 40))
	}
	t.Logf("a runc pod with SystemdCgroup on containerd %s:\n%s", art.ContainerdVersion, out.stdout)
	pod, ctr := field(out.stdout, "pod"), field(out.stdout, "ctr")
	for _, want := range []string{"logs: hello-from-first", "inet " + strings.TrimSuffix(art.PodSubnet, "0/24")} {
		if !strings.Contains(out.stdout, want) {
			t.Errorf("pod output lacks %q", want)
		}
	}
	if got := n.mustSh(t, "systemctl show -p ControlGroup --value containerd.service; cat /proc/$(crictl inspect -o go-template --template '{{.info.pid}}' "+ctr+")/cgroup | grep name=systemd"); !strings.Contains(got, "nodeprov.slice") {
		t.Errorf("the container is not in a systemd scope under nodeprov.slice:\n%s", got)
	}
	rlog := readFile(t, filepath.Join(regDir, "registry.log"))
	for _, want := range []string{"/v2/pause/manifests/3.10?ns=registry.k8s.io", "/v2/library/busybox/manifests/1.36?ns=docker.io"} {
		if !strings.Contains(rlog, want) {
			t.Errorf("the registry never served %s", want)
		}
	}
	before := podState(t, n, pod, ctr)
	t.Logf("pod before the upgrades: %s", before)

	// Upgrade to 2.x and back, under the running pod.
	for _, step := range []struct {
		name, spec, version, configVersion string
	}{
		{"upgrade to " + containerdUpgradeTo, spec2, strings.TrimPrefix(containerdUpgradeTo, "v"), "version = 3"},
		{"downgrade to " + art.ContainerdVersion, spec16, art.ContainerdVersion, "version = 2"},
	} {
		starts := n.starts(t, "containerd.service")
		r, rep := applyIn(t, n, step.spec)
		if r.code != 0 {
			t.Fatalf("%s:\n%s\n%s", step.name, r, n.journal(t, "containerd.service", 30))
		}
		after := n.starts(t, "containerd.service")
		t.Logf("%s: changed %q; containerd.service started %d times before, %d after", step.name, changedActions(rep), starts, after)
		if after != starts+1 {
			t.Errorf("%s restarted containerd %d times, want exactly once", step.name, after-starts)
		}
		if got := n.mustSh(t, "containerd --version; grep -m1 '^version' /etc/containerd/config.toml"); !strings.Contains(got, step.version) || !strings.Contains(got, step.configVersion) {
			t.Errorf("%s: containerd and its config:\n%s", step.name, got)
		}
		if got := podState(t, n, pod, ctr); got != before {
			t.Errorf("%s: the running pod changed:\nbefore %s\nafter  %s", step.name, before, got)
		} else {
			t.Logf("%s: pod untouched: %s", step.name, got)
		}
		if got := n.sh(t, "crictl version && crictl exec "+ctr+" cat /tmp/written"); got.code != 0 || !strings.Contains(got.stdout, "written") {
			t.Errorf("%s: crictl against the new daemon:\n%s", step.name, got)
		}
		if r, rep := applyIn(t, n, step.spec); r.code != 0 || rep.Changed != 0 {
			t.Errorf("%s: second apply changed %q", step.name, changedActions(rep))
		}
	}

	// A new sandbox image: containerd restarts once, a new pod uses it.
	starts := n.starts(t, "containerd.service")
	if r, rep := applyIn(t, n, nodePodsSpec(a, url, extraURL, crictlRel, crictlSHA, "", "registry.k8s.io/pause:3.9")); r.code != 0 {
		t.Fatalf("apply with a new sandboxImage:\n%s", r)
	} else {
		t.Logf("new sandboxImage: changed %q", changedActions(rep))
	}
	if got := n.starts(t, "containerd.service"); got != starts+1 {
		t.Errorf("a new sandboxImage restarted containerd %d times, want exactly once", got-starts)
	}
	out = n.sh(t, fmt.Sprintf(runPodScript, "second"))
	if out.code != 0 {
		t.Fatalf("a pod after the sandboxImage change:\n%s", out)
	}
	pod2 := field(out.stdout, "pod")
	img := n.mustSh(t, "crictl inspectp -o go-template --template '{{.info.image}}' "+pod2+"; crictl inspectp -o go-template --template '{{.info.image}}' "+pod)
	t.Logf("sandbox images (new pod, first pod): %s", strings.ReplaceAll(strings.TrimSpace(img), "\n", ", "))
	if lines := strings.Fields(img); len(lines) != 2 || lines[0] != "registry.k8s.io/pause:3.9" || lines[1] != "registry.k8s.io/pause:3.10" {
		t.Errorf("sandbox images: %q, want the new pod on pause:3.9 and the first on pause:3.10", img)
	}
	if !strings.Contains(readFile(t, filepath.Join(regDir, "registry.log")), "/v2/pause/manifests/3.9?ns=registry.k8s.io") {
		t.Error("the new sandbox image was not pulled through the mirror")
	}
}
