package e2e

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	art "github.com/nodeprov/nodeprov/e2e/artifacts"
)

// TestPreloadedImages: image archives in the spec's images: are verified
// like any artifact and installed in /var/lib/nodeprov/images; offline
// the import is deferred to first boot. Live, with containerd running (in
// private namespaces) and no registry anywhere, apply imports them into
// containerd's k8s.io namespace, a second apply imports nothing, check
// finds no drift — and a pod starts through CRI from the preloaded
// sandbox and busybox images. An image removed from containerd is drift
// (check exits 3) until apply imports it again, and so is every image
// while containerd does not run: plan and check say so instead of failing.
func TestPreloadedImages(t *testing.T) {
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Fatalf("skopeo is not installed (make test installs it): %v", err)
	}
	a := releaseArtifacts(t)
	srv := a.serve(t, nil)
	crictlURL, crictlSHA := crictlRelease(t)
	root := sandbox(t)
	dir, err := os.MkdirTemp("/tmp", "npimg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := art.PodNode{Root: root, Dir: dir, ServerURL: srv.URL, Keyring: a.keyring, CrictlURL: crictlURL, CrictlSHA: crictlSHA, ConfigVersion: 2}
	if err := n.Prepare(); err != nil {
		t.Fatal(err)
	}
	// docker save-style archives, named by their upstream names.
	var images strings.Builder
	images.WriteString("images:\n")
	for _, img := range []struct{ layout, name, file string }{
		{"pause:3.10", "registry.k8s.io/pause:3.10", "pause-3.10.tar"},
		{"busybox:1.36", "docker.io/library/busybox:1.36", "busybox-1.36.tar"},
	} {
		file := filepath.Join(dir, "archives", img.file)
		os.MkdirAll(filepath.Dir(file), 0o755)
		if r := runCmd(t, "", "skopeo", "--insecure-policy", "copy", "--quiet", "oci:"+filepath.Join(dir, "img", img.layout), "docker-archive:"+file+":"+img.name); r.code != 0 {
			t.Fatalf("skopeo: %s", r)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&images, "  - {url: \"file://%s\", sha256: %x}\n", file, sha256.Sum256(data))
	}
	spec := writeSpec(t, n.Spec()+images.String())

	off := runNodeprov(t, "", "apply", "--root", root, "-o", "json", spec)
	if off.code != 0 {
		t.Fatalf("offline apply:\n%s", off)
	}
	st := parseReport(t, off.stdout).statuses()
	for _, f := range []string{"pause-3.10.tar", "busybox-1.36.tar"} {
		if s := st["image "+f]; s != "deferred" {
			t.Errorf("offline: image %s is %q, want deferred to first boot", f, s)
		}
		if _, err := os.Stat(filepath.Join(root, "var/lib/nodeprov/images", f)); err != nil {
			t.Errorf("the archive is not installed: %v", err)
		}
	}

	for _, mp := range []string{"/etc/cni", "/etc/containerd"} {
		if _, err := os.Stat(mp); os.IsNotExist(err) {
			if err := os.Mkdir(mp, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(mp) })
		}
	}
	t.Cleanup(func() {
		for _, err := range n.RemoveCgroups() {
			t.Errorf("cgroup left behind: %v", err)
		}
	})
	live := fmt.Sprintf("%s --root %s --live yes --stages images", "%s", root)
	script := n.Namespace("") + fmt.Sprintf(`np() { %[3]s "$@"; }
rc=0; np %[6]s %[5]s > %[2]s/down.txt || rc=$?; echo "check before containerd: exit $rc"
grep -c "containerd does not answer at /run/containerd/containerd.sock" %[2]s/down.txt | sed 's/^/unanswered: /'
containerd --config %[1]s/etc/containerd/config.toml > %[2]s/containerd.log 2>&1 &
crictl() { %[1]s/usr/local/bin/crictl --config %[1]s/etc/crictl.yaml "$@"; }
echo "first: $(np %[4]s -o json %[5]s | grep '^  "changed"')"
echo "again: $(np %[4]s -o json %[5]s | grep '^  "changed"')"
np %[6]s %[5]s >/dev/null && echo "check: no drift"
pod=$(crictl runp --runtime runc %[2]s/pod-runc.json)
ctr=$(crictl create $pod %[2]s/ctr-runc.json %[2]s/pod-runc.json)
crictl start $ctr >/dev/null
for i in $(seq 100); do crictl exec $ctr cat /tmp/written 2>/dev/null && break; sleep 0.1; done
crictl stop --timeout 1 $ctr >/dev/null
crictl rm $ctr >/dev/null
crictl stopp $pod >/dev/null
crictl rmp $pod >/dev/null
crictl rmi docker.io/library/busybox:1.36 >/dev/null
rc=0; np %[6]s %[5]s > %[2]s/drift.txt || rc=$?; echo "check after rmi: exit $rc"
grep -o 'import [^ ]*busybox-1.36.tar[^:]*: docker.io/library/busybox:1.36' %[2]s/drift.txt || true
echo "repair: $(np %[4]s -o json %[5]s | grep '^  "changed"')"
`, root, dir, nodeprov, fmt.Sprintf(live, "apply"), spec, fmt.Sprintf(live, "check"))
	r := runCmd(t, "", "unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc", "--", "sh", "-c", script)
	clog, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
	t.Logf("preloaded images:\n%s", r.stdout)
	if r.code != 0 {
		t.Fatalf("preloaded images:\n%s\ncontainerd log (tail):\n%s", r, tail(string(clog), 30))
	}
	for _, want := range []string{
		"check before containerd: exit 3", "unanswered: 2", `first:   "changed": 2,`, `again:   "changed": 0,`, "check: no drift", "written-by-runc",
		"check after rmi: exit 3", "import /var/lib/nodeprov/images/busybox-1.36.tar into containerd's k8s.io namespace: docker.io/library/busybox:1.36",
		`repair:   "changed": 1,`,
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
