package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	art "github.com/nodeprov/nodeprov/e2e/artifacts"
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
// docker.io/library/busybox through the mirror and runs a runc pod —
// whose sandbox image registry.k8s.io/pause is pulled through the mirror
// too — with a container that writes a file and prints its pod address,
// reads the output back with `crictl logs`, runs `crictl exec` in it,
// applies the spec again while it runs, and removes it all; then a runsc
// (gVisor) pod sandbox. Once per containerd: Debian's 1.6 as nodeprov
// installed it, and 2.1 and 2.4 built from the module with their shims.
// See art.PodNode for the script and what this machine lacks.
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
	node := func(t *testing.T, configVersion int) art.PodNode {
		return art.PodNode{ServerURL: srv.URL, Keyring: a.keyring, CrictlURL: crictlURL, CrictlSHA: crictlSHA, ConfigVersion: configVersion}
	}
	t.Run("containerd-1.6", func(t *testing.T) {
		podsThroughCRI(t, node(t, 2), "")
	})
	for _, rel := range containerd2Releases {
		t.Run("containerd-"+strings.TrimPrefix(rel.version, "v"), func(t *testing.T) {
			containerd, _ := containerd2Binaries(t, rel.version)
			podsThroughCRI(t, node(t, rel.configVersion), containerd)
		})
	}
}

// crictlRelease builds crictl from the cri-tools module (once, into the e2e
// cache), lays it out as upstream releases it and serves it on loopback;
// it returns the release directory's URL and the tarball's sha256, for a
// spec's components.crictl.
func crictlRelease(t *testing.T) (baseURL, sha string) {
	t.Helper()
	dir := t.TempDir()
	rel, sha, err := art.PackCrictl(dir, crictlBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := art.Serve(dir, art.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv.URL + "/" + rel, sha
}

// crictlBinary returns crictl built from the cri-tools module, once, into
// the e2e cache.
func crictlBinary(t *testing.T) string {
	t.Helper()
	return filepath.Join(cachedBuild(t, "crictl-"+art.CrictlVersion, func(dir string) error {
		out, err := exec.Command(filepath.Join(dir, "crictl"), "--version").Output()
		if err != nil {
			return err
		}
		if !strings.Contains(string(out), art.CrictlVersion) {
			return fmt.Errorf("crictl --version says %q", out)
		}
		return nil
	}, func(ctx context.Context, out string, log io.Writer) error {
		return art.BuildCrictl(ctx, out, log)
	}), "crictl")
}

// podsThroughCRI applies the pods node to a sandbox root and runs its pods
// (art.PodNode.Script) with the containerd binary given (the one nodeprov
// installed when empty) and the shims next to it.
func podsThroughCRI(t *testing.T, n art.PodNode, containerd string) {
	n.Root = sandbox(t)
	dir, err := os.MkdirTemp("/tmp", "npcri")
	if err != nil {
		t.Fatal(err)
	}
	n.Dir = dir
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
	spec := writeSpec(t, n.Spec())
	if r := runNodeprov(t, "", "apply", "--root", n.Root, spec); r.code != 0 {
		t.Fatalf("apply:\n%s", r)
	}
	if r := runNodeprov(t, "", "apply", "--root", n.Root, "-o", "json", spec); r.code != 0 || parseReport(t, r.stdout).Changed != 0 {
		t.Fatalf("second apply changed something:\n%s", r)
	}
	if err := n.Prepare(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, err := range n.RemoveCgroups() {
			t.Errorf("cgroup left behind: %v", err)
		}
	})
	if containerd == "" {
		containerd = n.Root + "/usr/local/bin/containerd"
	}
	r := runCmd(t, "", "unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc", "--", "sh", "-c", n.Script(containerd, nodeprov, spec))
	clog, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
	rlog, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
	t.Logf("pods through CRI:\n%s", r.stdout)
	if r.code != 0 {
		t.Fatalf("pods through CRI:\n%s\ncontainerd log (tail):\n%s\nregistry log (tail):\n%s", r, tail(string(clog), 40), tail(string(rlog), 10))
	}
	for _, want := range []string{"logs runc: hello-from-runc", "written-by-runc", "removed runc",
		"second apply changed nothing", "pod untouched by the second apply", "handler runsc SANDBOX_READY",
		"runsc runs the sandbox running", "crictl version v" + art.CrictlVersion, "sandbox-image-pulled"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, h := range []string{"runc", "runsc"} {
		if !regexp.MustCompile(`pod ` + h + ` [0-9a-f]{64} ip 10\.123\.46\.[0-9]+\n`).MatchString(r.stdout) {
			t.Errorf("the %s pod got no address from %s", h, art.PodSubnet)
		}
	}
	// The runc container sees its CNI interface.
	if !strings.Contains(r.stdout, "logs runc: 2: eth0    inet 10.123.46.") {
		t.Errorf("the runc container has no address from %s", art.PodSubnet)
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
