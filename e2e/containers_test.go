package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// busyboxRootfs builds a minimal container root file system from Debian's
// busybox-static.
func busyboxRootfs(t *testing.T, dir string) string {
	t.Helper()
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "sys", "dev", "etc", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := copyFile("/bin/busybox", filepath.Join(rootfs, "bin/busybox")); err != nil {
		t.Fatalf("busybox-static is not installed (make test installs it): %v", err)
	}
	for _, applet := range []string{"sh", "ip", "cat", "echo", "hostname", "uname"} {
		os.Symlink("busybox", filepath.Join(rootfs, "bin", applet))
	}
	return rootfs
}

// TestContainersRunOnProvisionedNode is the whole path of a node: apply
// installs containerd, runc, runsc and the CNI plugins from the loopback
// mirror and renders containerd's config and the bridge network; that
// containerd then runs a busybox container under runc, one under runsc
// (gVisor), and one with CNI networking that gets an address from the
// configured subnet.
//
// Everything runs in fresh mount, network and PID namespaces: the bridge,
// its iptables rules, the veths, all mounts and every process (containerd,
// shims, sandboxes) disappear with them, and /opt and /etc/cni are tmpfs
// there, so the host's are never touched.
func TestContainersRunOnProvisionedNode(t *testing.T) {
	a := releaseArtifacts(t)
	srv := a.serve(t, nil)
	root := sandbox(t)
	dir, err := os.MkdirTemp("/tmp", "npn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if _, err := os.Stat("/etc/cni"); os.IsNotExist(err) {
		// A mount point for the namespace's tmpfs; removed again after.
		if err := os.Mkdir("/etc/cni", 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove("/etc/cni") })
	}
	const subnet = "10.123.45.0/24"
	spec := writeSpec(t, componentsSpec(a, srv.URL, fmt.Sprintf(`containerd:
  cgroupDriver: cgroupfs
  root: %[1]s/root
  state: %[1]s/state
  address: %[1]s/c.sock
  runtimes:
    runc: {type: io.containerd.runc.v2, binaryName: %[2]s/usr/local/sbin/runc}
    runsc: {type: io.containerd.runc.v2, binaryName: %[2]s/usr/local/bin/runsc}
  cni: {network: bridge, subnet: %[3]s}
`, dir, root, subnet)))
	if r := runNodeprov(t, "", "apply", "--root", root, spec); r.code != 0 {
		t.Fatalf("apply:\n%s", r)
	}
	rootfs := busyboxRootfs(t, dir)
	// runsc refuses to share the host's network namespace; in its own
	// empty one it needs --network=none (shared/FACTS.md).
	wrapper := filepath.Join(dir, "runsc-none")
	os.WriteFile(wrapper, []byte("#!/bin/sh\nexec "+root+"/usr/local/bin/runsc --network=none \"$@\"\n"), 0o755)

	// containerd makes a cgroup per namespace (cgroupfs driver) and keeps
	// it: a namespace of the test's own is removed again below.
	ns := "nodeprov-e2e-" + filepath.Base(dir)
	t.Cleanup(func() {
		cgs, _ := filepath.Glob("/sys/fs/cgroup/*/" + ns)
		for _, cg := range cgs {
			if err := os.Remove(cg); err != nil {
				t.Errorf("cgroup left behind: %v", err)
			}
		}
	})
	script := fmt.Sprintf(`set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /opt && mkdir -p /opt/cni/bin && mount --bind %[1]s/opt/cni/bin /opt/cni/bin
mount -t tmpfs tmpfs /etc/cni && mkdir -p /etc/cni/net.d && mount --bind %[1]s/etc/cni/net.d /etc/cni/net.d
ip link set lo up
export PATH=%[1]s/usr/local/bin:%[1]s/usr/local/sbin:$PATH
containerd --config %[1]s/etc/containerd/config.toml > %[2]s/containerd.log 2>&1 &
for i in $(seq 100); do ctr --address %[2]s/c.sock version >/dev/null 2>&1 && break; sleep 0.1; done
ctr() { command ctr --address %[2]s/c.sock -n %[5]s "$@"; }
ctr plugins ls | awk '$2=="cri"{print "cri-plugin", $NF}'
ctr run --rm --runc-binary %[1]s/usr/local/sbin/runc --rootfs %[3]s c-runc /bin/sh -c 'echo runc-ran-in; cat /proc/self/cgroup'
ctr run --rm --runc-binary %[4]s --rootfs %[3]s c-runsc /bin/sh -c 'echo runsc-kernel-$(uname -r)'
ctr run --rm --cni --runc-binary %[1]s/usr/local/sbin/runc --rootfs %[3]s c-net /bin/ip -4 -o addr show dev eth0
`, root, dir, rootfs, wrapper, ns)
	r := runCmd(t, "", "unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc", "--", "sh", "-c", script)
	log, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
	if r.code != 0 {
		t.Fatalf("containers on the provisioned node:\n%s\ncontainerd log (tail):\n%s", r, tail(string(log), 30))
	}
	for _, want := range []string{"cri-plugin ok", "/" + ns + "/c-runc", "runsc-kernel-4.4.0"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	// gVisor reports its own kernel version (4.4.0), proving the sandbox.
	if !strings.Contains(r.stdout, "inet 10.123.45.") {
		t.Errorf("the CNI container got no address from %s:\n%s", subnet, r.stdout)
	}
	// The namespaces are gone: nothing of the test is left mounted, and
	// the shims' and ctr's /run/containerd was the namespace's own.
	if _, err := os.Stat("/run/containerd/runc/" + ns); err == nil {
		t.Errorf("the test left /run/containerd/runc/%s on the host", ns)
	}
	if mounts, _ := os.ReadFile("/proc/self/mounts"); strings.Contains(string(mounts), dir) {
		t.Errorf("mounts left behind:\n%s", mounts)
	}
	if out, _ := exec.Command("ip", "link", "show", "cni0").CombinedOutput(); !strings.Contains(string(out), "does not exist") {
		t.Errorf("the host has a cni0 bridge: %s", out)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
