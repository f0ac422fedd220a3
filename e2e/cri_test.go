package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPodsThroughCRI is the kubelet's view of a provisioned node (issue
// 14): nodeprov installs containerd (Debian's 1.6, release-shaped), runc,
// runsc, the CNI plugins and crictl (built from cri-tools, served
// release-shaped and pinned), and renders containerd's config, the
// registry hosts files, the bridge network and /etc/crictl.yaml. Then, in
// fresh mount, network and PID namespaces: a real registry (Debian's
// docker-registry) on loopback holds a busybox image and a pause image
// the test builds itself; containerd runs with nodeprov's config; and the
// crictl nodeprov installed, with the crictl.yaml nodeprov wrote, pulls
// docker.io/library/busybox through the mirror, and on each handler (runc,
// runsc) runs a pod — whose sandbox image registry.k8s.io/pause is pulled
// through the mirror too — with a container that writes a file and prints
// its pod address, reads the output back with `crictl logs`, runs `crictl
// exec` in it, and removes it all.
//
// Everything the test starts lives in its namespaces and dies with them;
// the pods' cgroups are under a parent of the test's own, removed after.
func TestPodsThroughCRI(t *testing.T) {
	for _, tool := range []string{"docker-registry", "skopeo", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (make test installs it): %v", tool, err)
		}
	}
	a := releaseArtifacts(t)
	srv := a.serve(t, nil)
	crictlURL, crictlSHA := crictlRelease(t)
	t.Run("containerd-1.6", func(t *testing.T) {
		podsThroughCRI(t, a, srv.URL, crictlURL, crictlSHA, "", 2)
	})
	for _, rel := range containerd2Releases {
		t.Run("containerd-"+strings.TrimPrefix(rel.version, "v"), func(t *testing.T) {
			containerd, _ := containerd2Binaries(t, rel.version)
			podsThroughCRI(t, a, srv.URL, crictlURL, crictlSHA, containerd, rel.configVersion)
		})
	}
}

// podsThroughCRI runs the pods of TestPodsThroughCRI with the containerd
// binary given (the one nodeprov installed when empty) and the shims next
// to it, with nodeprov's config of that version.
func podsThroughCRI(t *testing.T, a *artifacts, serverURL, crictlURL, crictlSHA, containerd string, configVersion int) {
	root := sandbox(t)
	dir, err := os.MkdirTemp("/tmp", "npcri")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, mp := range []string{"/etc/cni", "/etc/containerd"} {
		if _, err := os.Stat(mp); os.IsNotExist(err) {
			// A mount point for the namespace's own; removed again after.
			if err := os.Mkdir(mp, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(mp) })
		}
	}
	const (
		subnet   = "10.123.46.0/24"
		registry = "127.0.0.1:5000"
	)
	// The CRI plugin that holds restrict_oom_score_adj: the one plugin
	// of version 2, the runtime plugin of 3 and 4.
	criPlugin := "io.containerd.grpc.v1.cri"
	if configVersion >= 3 {
		criPlugin = "io.containerd.cri.v1.runtime"
	}
	spec := writeSpec(t, componentsSpec(a, serverURL, fmt.Sprintf(`  crictl:
    version: %[5]s
    baseURL: %[6]s
    sha256: {amd64: %[7]s}
containerd:
  configVersion: %[8]d
  cgroupDriver: cgroupfs
  root: %[1]s/containerd
  runtimes:
    runc: {type: io.containerd.runc.v2, binaryName: %[2]s/usr/local/sbin/runc}
    runsc: {type: io.containerd.runc.v2, binaryName: %[1]s/runsc-none}
  registries:
    docker.io: {mirrors: [{host: "http://%[4]s"}]}
    registry.k8s.io: {mirrors: [{host: "http://%[4]s"}]}
  cni: {network: bridge, subnet: %[3]s}
  # This machine withholds CAP_SYS_RESOURCE, so no process may lower its
  # oom_score_adj, and the CRI plugin gives sandboxes -998: restrict it to
  # containerd's own, as for containerd in a user namespace.
  patch:
    plugins:
      %[9]s: {restrict_oom_score_adj: true}
`, dir, root, subnet, registry, crictlVersion, crictlURL, crictlSHA, configVersion, criPlugin)))
	if r := runNodeprov(t, "", "apply", "--root", root, spec); r.code != 0 {
		t.Fatalf("apply:\n%s", r)
	}
	if r := runNodeprov(t, "", "apply", "--root", root, "-o", "json", spec); r.code != 0 || parseReport(t, r.stdout).Changed != 0 {
		t.Fatalf("second apply changed something:\n%s", r)
	}

	// Debian's runsc (20221219) takes any network namespace for the root
	// one on this kernel (it probes /proc/sys/net/core/rmem_default, which
	// kernels since 5.x have in every namespace) and refuses to set up
	// the pod's network: it runs with --network=none through the runc
	// shim (Debian ships no containerd-shim-runsc-v1). The pod still gets
	// its CNI address; the sandbox has no interface.
	os.WriteFile(filepath.Join(dir, "runsc-none"), []byte("#!/bin/sh\nexec "+root+"/usr/local/bin/runsc --network=none \"$@\"\n"), 0o755)
	ociImage(t, filepath.Join(dir, "img", "busybox"), "1.36", []string{"/bin/sh"})
	ociImage(t, filepath.Join(dir, "img", "pause"), "3.10", []string{"/bin/sleep", "2147483647"})
	os.WriteFile(filepath.Join(dir, "registry.yml"), []byte(fmt.Sprintf(`version: 0.1
storage: {filesystem: {rootdirectory: %s/registry}}
http: {addr: %s}
log: {accesslog: {disabled: false}, level: info}
`, dir, registry)), 0o644)

	// Pods get a cgroup parent of the test's own (cgroupfs driver), so
	// that the cgroups containerd leaves are found and removed.
	cgParent := "nodeprov-e2e-" + filepath.Base(dir)
	t.Cleanup(func() { removeCgroups(t, cgParent) })
	for _, h := range []string{"runc", "runsc"} {
		os.WriteFile(filepath.Join(dir, "pod-"+h+".json"), []byte(fmt.Sprintf(`{
  "metadata": {"name": "pod-%[1]s", "namespace": "default", "uid": "uid-%[1]s", "attempt": 0},
  "log_directory": "%[2]s/logs/%[1]s",
  "linux": {"cgroup_parent": "/%[3]s/pod-%[1]s"}
}`, h, dir, cgParent)), 0o644)
		if h != "runc" {
			continue
		}
		os.WriteFile(filepath.Join(dir, "ctr-"+h+".json"), []byte(fmt.Sprintf(`{
  "metadata": {"name": "busybox"},
  "image": {"image": "docker.io/library/busybox:1.36"},
  "command": ["/bin/sh", "-c", "echo hello-from-%[1]s; echo kernel $(uname -r); ip -4 -o addr show dev eth0; echo written-by-%[1]s > /tmp/written; sleep 1000"],
  "log_path": "busybox.log",
  "linux": {}
}`, h)), 0o644)
	}

	if containerd == "" {
		containerd = root + "/usr/local/bin/containerd"
	}
	script := fmt.Sprintf(`set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /opt && mkdir -p /opt/cni/bin && mount --bind %[1]s/opt/cni/bin /opt/cni/bin
mount -t tmpfs tmpfs /etc/cni && mkdir -p /etc/cni/net.d && mount --bind %[1]s/etc/cni/net.d /etc/cni/net.d
mount --bind %[1]s/etc/containerd /etc/containerd
ip link set lo up
export PATH=%[5]s:%[1]s/usr/local/bin:%[1]s/usr/local/sbin:$PATH
docker-registry serve %[2]s/registry.yml > %[2]s/registry.log 2>&1 &
for i in $(seq 100); do curl -sf http://%[3]s/v2/ >/dev/null && break; sleep 0.1; done
skopeo --insecure-policy copy --quiet --dest-tls-verify=false oci:%[2]s/img/busybox:1.36 docker://%[3]s/library/busybox:1.36
skopeo --insecure-policy copy --quiet --dest-tls-verify=false oci:%[2]s/img/pause:3.10 docker://%[3]s/pause:3.10
%[4]s --config %[1]s/etc/containerd/config.toml > %[2]s/containerd.log 2>&1 &
crictl() { %[1]s/usr/local/bin/crictl --config %[1]s/etc/crictl.yaml "$@"; }
for i in $(seq 100); do crictl info >/dev/null 2>&1 && break; sleep 0.1; done
crictl --version
crictl pull docker.io/library/busybox:1.36
pod=$(crictl runp --runtime runc %[2]s/pod-runc.json)
echo "pod runc $pod ip $(crictl inspectp -o go-template --template '{{.status.network.ip}}' $pod)"
ctr=$(crictl create $pod %[2]s/ctr-runc.json %[2]s/pod-runc.json)
crictl start $ctr
for i in $(seq 100); do crictl exec $ctr cat /tmp/written 2>/dev/null && break; sleep 0.1; done
crictl logs $ctr | sed "s/^/logs runc: /"
# A second apply while the pod runs changes nothing and leaves it alone.
started=$(crictl inspect -o go-template --template '{{.status.startedAt}}' $ctr)
%[6]s apply --root %[1]s -o json %[7]s | grep -q '^  "changed": 0,' && echo "second apply changed nothing"
[ "$(crictl inspect -o go-template --template '{{.status.startedAt}} {{.status.state}}' $ctr)" = "$started CONTAINER_RUNNING" ] &&
  [ "$(crictl inspectp -o go-template --template '{{.status.state}}' $pod)" = SANDBOX_READY ] && echo "pod untouched by the second apply"
crictl stop --timeout 1 $ctr >/dev/null && crictl rm $ctr >/dev/null
crictl stopp $pod >/dev/null && crictl rmp $pod >/dev/null
echo "removed runc"
pod=$(crictl runp --runtime runsc %[2]s/pod-runsc.json)
echo "pod runsc $pod ip $(crictl inspectp -o go-template --template '{{.status.network.ip}}' $pod)"
echo "handler $(crictl inspectp -o go-template --template '{{.status.runtimeHandler}} {{.status.state}}' $pod)"
%[1]s/usr/local/bin/runsc --root /run/containerd/runc/k8s.io list | awk -v id=$pod '$1==id {print "runsc runs the sandbox", $3}'
crictl stopp $pod >/dev/null && crictl rmp $pod >/dev/null
echo "removed runsc"
crictl inspecti registry.k8s.io/pause:3.10 >/dev/null && echo sandbox-image-pulled
`, root, dir, registry, containerd, filepath.Dir(containerd), nodeprov, spec)
	r := runCmd(t, "", "unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc", "--", "sh", "-c", script)
	clog, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
	rlog, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
	t.Logf("pods through CRI:\n%s", r.stdout)
	if r.code != 0 {
		t.Fatalf("pods through CRI:\n%s\ncontainerd log (tail):\n%s\nregistry log (tail):\n%s", r, tail(string(clog), 40), tail(string(rlog), 10))
	}
	for _, want := range []string{"logs runc: hello-from-runc", "written-by-runc", "removed runc",
		"second apply changed nothing", "pod untouched by the second apply", "handler runsc SANDBOX_READY", "runsc runs the sandbox running", "removed runsc"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, h := range []string{"runc", "runsc"} {
		if !regexp.MustCompile(`pod ` + h + ` [0-9a-f]{64} ip 10\.123\.46\.[0-9]+\n`).MatchString(r.stdout) {
			t.Errorf("the %s pod got no address from %s", h, subnet)
		}
	}
	// The runc container sees its CNI interface.
	if !strings.Contains(r.stdout, "logs runc: 2: eth0    inet 10.123.46.") {
		t.Errorf("the runc container has no address from %s", subnet)
	}
	if !strings.Contains(r.stdout, "crictl version v"+crictlVersion) {
		t.Errorf("the crictl that ran is not the one nodeprov installed (%s)", crictlVersion)
	}
	if !strings.Contains(r.stdout, "sandbox-image-pulled") {
		t.Errorf("the sandbox image was not pulled")
	}
	// Both pulls arrived at the registry through the mirror: containerd
	// resolved each upstream name there (ns= names the upstream registry)
	// and fetched the blobs.
	for _, want := range []string{
		`"HEAD /v2/pause/manifests/3.10?ns=registry.k8s.io HTTP/1.1" 200`,
		`"HEAD /v2/library/busybox/manifests/1.36?ns=docker.io HTTP/1.1" 200`,
		`"GET /v2/pause/blobs/sha256:`, `"GET /v2/library/busybox/blobs/sha256:`,
	} {
		if !strings.Contains(string(rlog), want) {
			t.Errorf("registry access log lacks %q:\n%s", want, tail(string(rlog), 20))
		}
	}
	if out, _ := exec.Command("ip", "link", "show", "cni0").CombinedOutput(); !strings.Contains(string(out), "does not exist") {
		t.Errorf("the host has a cni0 bridge: %s", out)
	}
	if mounts, _ := os.ReadFile("/proc/self/mounts"); strings.Contains(string(mounts), dir) {
		t.Errorf("mounts left behind:\n%s", mounts)
	}
}

// removeCgroups removes the cgroup directories named name under every
// mounted controller (cgroup v1) or the unified hierarchy, deepest first:
// containerd leaves the cgroups of the pods it ran with the cgroupfs
// driver. A cgroup that still has processes fails the test.
func removeCgroups(t *testing.T, name string) {
	tops, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	if top := "/sys/fs/cgroup/" + name; fileExists(top) {
		tops = append(tops, top)
	}
	for _, top := range tops {
		var dirs []string
		filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil {
				t.Errorf("cgroup left behind: %v", err)
			}
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
