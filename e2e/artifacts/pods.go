package artifacts

import (
	"fmt"
	"os"
	"path/filepath"
)

// PodNode is a sandbox node that runs pods through CRI (e2e
// TestPodsThroughCRI and `make demo-pods`): the spec nodeprov applies to
// Root — containerd, runc, runsc, the CNI plugins and crictl from a tree's
// server, the registry mirrors and the bridge network — and, in Dir, what
// the pods need: a registry's configuration and storage, a busybox image
// and a pause image, the pods' and container's CRI configs.
type PodNode struct {
	Root, Dir string
	// ServerURL serves the artifact tree; Keyring is its runc key.
	ServerURL, Keyring string
	// CrictlURL and CrictlSHA are crictl's release directory and pin.
	CrictlURL, CrictlSHA string
	// ConfigVersion is containerd's config version: 2 (1.6), 3 (2.0-2.3)
	// or 4 (2.4 and later).
	ConfigVersion int
}

// Pod network and registry of a PodNode.
const (
	PodSubnet   = "10.123.46.0/24"
	PodRegistry = "127.0.0.1:5000"
)

// CgroupParent is the cgroup under which the pods' cgroups are made
// (cgroupfs driver), so that they can be found and removed after.
func (n PodNode) CgroupParent() string { return "nodeprov-pods-" + filepath.Base(n.Dir) }

// Spec is the node spec.
func (n PodNode) Spec() string {
	// The CRI plugin that holds restrict_oom_score_adj: the one plugin of
	// version 2, the runtime plugin of 3 and 4.
	criPlugin := "io.containerd.grpc.v1.cri"
	if n.ConfigVersion >= 3 {
		criPlugin = "io.containerd.cri.v1.runtime"
	}
	return fmt.Sprintf(`apiVersion: nodeprov/v1alpha1
kind: Node
metadata: {name: pods}
%[1]s  crictl:
    version: %[2]s
    baseURL: %[3]s
    sha256: {amd64: %[4]s}
containerd:
  configVersion: %[5]d
  cgroupDriver: cgroupfs
  root: %[6]s/containerd
  runtimes:
    runc: {type: io.containerd.runc.v2, binaryName: %[7]s/usr/local/sbin/runc}
    runsc: {type: io.containerd.runc.v2, binaryName: %[6]s/runsc-none}
  registries:
    docker.io: {mirrors: [{host: "http://%[8]s"}]}
    registry.k8s.io: {mirrors: [{host: "http://%[8]s"}]}
  cni: {network: bridge, subnet: %[9]s}
  # The test machine withholds CAP_SYS_RESOURCE, so no process may lower
  # its oom_score_adj, and the CRI plugin gives sandboxes -998: restrict it
  # to containerd's own, as for containerd in a user namespace.
  patch:
    plugins:
      %[10]s: {restrict_oom_score_adj: true}
`, ComponentsYAML(n.ServerURL, n.Keyring, true),
		CrictlVersion, n.CrictlURL, n.CrictlSHA, n.ConfigVersion, n.Dir, n.Root, PodRegistry, PodSubnet, criPlugin)
}

// Prepare writes what the pods need into Dir: the images (busybox 1.36
// and a pause 3.10 whose entrypoint sleeps), the registry's
// configuration, the runsc wrapper and the CRI configs of a runc pod with
// a busybox container and of a runsc pod.
//
// Debian's runsc (20221219) takes any network namespace for the root one
// on recent kernels (it probes /proc/sys/net/core/rmem_default, which they
// have in every namespace) and refuses to set up a pod's network, so it
// runs with --network=none through the runc shim (Debian ships no
// containerd-shim-runsc-v1): the pod gets its CNI address, the sandbox no
// interface.
func (n PodNode) Prepare() error {
	if err := WriteBusyboxImage(filepath.Join(n.Dir, "img", "busybox"), "1.36", []string{"/bin/sh"}); err != nil {
		return err
	}
	if err := WriteBusyboxImage(filepath.Join(n.Dir, "img", "pause"), "3.10", []string{"/bin/sleep", "2147483647"}); err != nil {
		return err
	}
	files := map[string]string{
		"runsc-none": "#!/bin/sh\nexec " + n.Root + "/usr/local/bin/runsc --network=none \"$@\"\n",
		"registry.yml": fmt.Sprintf(`version: 0.1
storage: {filesystem: {rootdirectory: %s/registry}}
http: {addr: %s}
log: {accesslog: {disabled: false}, level: info}
`, n.Dir, PodRegistry),
		"ctr-runc.json": `{
  "metadata": {"name": "busybox"},
  "image": {"image": "docker.io/library/busybox:1.36"},
  "command": ["/bin/sh", "-c", "echo hello-from-runc; echo kernel $(uname -r); ip -4 -o addr show dev eth0; echo written-by-runc > /tmp/written; sleep 1000"],
  "log_path": "busybox.log",
  "linux": {}
}`,
	}
	for _, h := range []string{"runc", "runsc"} {
		files["pod-"+h+".json"] = fmt.Sprintf(`{
  "metadata": {"name": "pod-%[1]s", "namespace": "default", "uid": "uid-%[1]s", "attempt": 0},
  "log_directory": "%[2]s/logs/%[1]s",
  "linux": {"cgroup_parent": "/%[3]s/pod-%[1]s"}
}`, h, n.Dir, n.CgroupParent())
	}
	for name, data := range files {
		mode := os.FileMode(0o644)
		if name == "runsc-none" {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(n.Dir, name), []byte(data), mode); err != nil {
			return err
		}
	}
	return nil
}

// Script is the shell script that, run as root in fresh mount, network
// and PID namespaces (`unshare --mount --net --pid --fork --mount-proc`),
// starts the registry and pushes the images, starts containerd (the binary
// given, with the shims in its directory first on PATH) with nodeprov's
// config, and with the crictl nodeprov installed and the crictl.yaml it
// wrote: pulls busybox through the mirror; runs a runc pod (its sandbox
// image pulled through the mirror too) with a container — exec, logs, and
// a second `nodeprov apply` of spec while it runs — then removes it; runs
// a runsc pod sandbox, which the end of the namespaces removes: the runc
// shim runs runsc's sandbox but never sees it exit, so stopping it through
// CRI waits forever (containerd-shim-runsc-v1 would, and Debian ships
// none). Lines starting with "== " say what comes next; the others are
// what the test checks.
func (n PodNode) Script(containerd, nodeprov, spec string) string {
	return n.Namespace(filepath.Dir(containerd)) + fmt.Sprintf(`echo "== the registry (docker-registry) on %[3]s, with busybox and pause pushed by skopeo"
docker-registry serve %[2]s/registry.yml > %[2]s/registry.log 2>&1 &
for i in $(seq 100); do curl -sf http://%[3]s/v2/ >/dev/null && break; sleep 0.1; done
skopeo --insecure-policy copy --quiet --dest-tls-verify=false oci:%[2]s/img/busybox:1.36 docker://%[3]s/library/busybox:1.36
skopeo --insecure-policy copy --quiet --dest-tls-verify=false oci:%[2]s/img/pause:3.10 docker://%[3]s/pause:3.10
echo "== containerd $(%[4]s --version | awk '{print $3}') with nodeprov's config"
%[4]s --config %[1]s/etc/containerd/config.toml > %[2]s/containerd.log 2>&1 &
crictl() { %[1]s/usr/local/bin/crictl --config %[1]s/etc/crictl.yaml "$@"; }
for i in $(seq 100); do crictl info >/dev/null 2>&1 && break; sleep 0.1; done
echo "== crictl (installed by nodeprov, configured by its /etc/crictl.yaml): pull docker.io/library/busybox:1.36 through the mirror"
crictl --version
crictl pull docker.io/library/busybox:1.36
echo "== a runc pod (its sandbox image registry.k8s.io/pause:3.10 pulled through the mirror) with a busybox container"
pod=$(crictl runp --runtime runc %[2]s/pod-runc.json)
echo "pod runc $pod ip $(crictl inspectp -o go-template --template '{{.status.network.ip}}' $pod)"
ctr=$(crictl create $pod %[2]s/ctr-runc.json %[2]s/pod-runc.json)
crictl start $ctr
for i in $(seq 100); do crictl exec $ctr cat /tmp/written 2>/dev/null && break; sleep 0.1; done
crictl logs $ctr | sed "s/^/logs runc: /"
echo "== a second nodeprov apply while the pod runs"
started=$(crictl inspect -o go-template --template '{{.status.startedAt}}' $ctr)
%[5]s apply --root %[1]s -o json %[6]s | grep -q '^  "changed": 0,' && echo "second apply changed nothing"
[ "$(crictl inspect -o go-template --template '{{.status.startedAt}} {{.status.state}}' $ctr)" = "$started CONTAINER_RUNNING" ] &&
  [ "$(crictl inspectp -o go-template --template '{{.status.state}}' $pod)" = SANDBOX_READY ] && echo "pod untouched by the second apply"
crictl stop --timeout 1 $ctr >/dev/null
crictl rm $ctr >/dev/null
crictl stopp $pod >/dev/null
crictl rmp $pod >/dev/null
[ -z "$(crictl pods -q)" ] && echo "removed runc"
echo "== a runsc (gVisor) pod sandbox"
pod=$(crictl runp --runtime runsc %[2]s/pod-runsc.json)
echo "pod runsc $pod ip $(crictl inspectp -o go-template --template '{{.status.network.ip}}' $pod)"
echo "handler $(crictl inspectp -o go-template --template '{{.status.runtimeHandler}} {{.status.state}}' $pod)"
%[1]s/usr/local/bin/runsc --root /run/containerd/runc/k8s.io list | awk -v id=$pod '$1==id {print "runsc runs the sandbox", $3}'
echo "runsc sandbox left to the end of the namespaces: through the runc shim CRI can start it, not stop it (that needs containerd-shim-runsc-v1)"
crictl inspecti registry.k8s.io/pause:3.10 >/dev/null && echo sandbox-image-pulled
`, n.Root, n.Dir, PodRegistry, containerd, nodeprov, spec)
}

// Namespace is the start of every script run as root in fresh mount,
// network and PID namespaces (`unshare --mount --net --pid --fork
// --mount-proc`) on Root: it stops on the first failing command, gives
// the namespaces their own /run, /opt and /etc/cni (mounting the root's
// CNI plugins and configuration there) and the root's /etc/containerd
// (containerd's config names its drop-ins and hosts.toml directory by
// absolute path), brings up loopback, and puts bin (when not empty) and
// the root's binaries first on PATH. Nothing of it outlives the
// namespaces.
func (n PodNode) Namespace(bin string) string {
	path := n.Root + "/usr/local/bin:" + n.Root + "/usr/local/sbin"
	if bin != "" {
		path = bin + ":" + path
	}
	return fmt.Sprintf(`set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /opt && mkdir -p /opt/cni/bin && mount --bind %[1]s/opt/cni/bin /opt/cni/bin
mount -t tmpfs tmpfs /etc/cni && mkdir -p /etc/cni/net.d && mount --bind %[1]s/etc/cni/net.d /etc/cni/net.d
mount --bind %[1]s/etc/containerd /etc/containerd
ip link set lo up
export PATH=%[2]s:$PATH
`, n.Root, path)
}

// RemoveCgroups removes the pods' cgroups under every cgroup v1
// controller and the unified hierarchy, deepest first (containerd leaves
// them with the cgroupfs driver), and returns those it could not remove.
func (n PodNode) RemoveCgroups() []error {
	tops, _ := filepath.Glob("/sys/fs/cgroup/*/" + n.CgroupParent())
	if top := "/sys/fs/cgroup/" + n.CgroupParent(); dirExists(top) {
		tops = append(tops, top)
	}
	var errs []error
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
				errs = append(errs, err)
			}
		}
	}
	return errs
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
