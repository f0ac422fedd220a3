package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLayeredSpecs: a base spec with fragments, given on the command line
// and in its node.d directory, is validated, planned and applied as the
// merge; a fragment that conflicts with the base is refused with both
// files and lines; `cloud-init --fragment` writes only the fragment.
func TestLayeredSpecs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := write("node.yaml", `apiVersion: nodeprov/v1alpha1
kind: Node
metadata: {name: golden}
files:
  - {path: /etc/motd, contents: "golden image\n"}
  - {path: /etc/site, contents: "unset\n"}
`)
	site := write("site.yaml", `apiVersion: nodeprov/v1alpha1
kind: Node
files:
  - {path: /etc/site, contents: "site one\n"}
`)
	write("node.d/50-user-data.yaml", `apiVersion: nodeprov/v1alpha1
kind: Node
files:
  - {path: /etc/motd, $delete: true}
  - {path: /etc/from-user-data, contents: "hello\n"}
`)
	if r := runNodeprov(t, "", "validate", base, site); r.code != 0 {
		t.Fatalf("validate:\n%s", r)
	}
	r := runNodeprov(t, "", "plan", "--expanded", base, site)
	if r.code != 0 || !strings.Contains(r.stdout, "site one") || !strings.Contains(r.stdout, "/etc/from-user-data") || strings.Contains(r.stdout, "/etc/motd") {
		t.Fatalf("plan --expanded does not show the merge:\n%s", r)
	}
	root := sandbox(t)
	if r := runNodeprov(t, "", "apply", "--root", root, "--stages", "files", base, site); r.code != 0 {
		t.Fatalf("apply:\n%s", r)
	}
	for p, want := range map[string]string{"etc/site": "site one\n", "etc/from-user-data": "hello\n"} {
		if got, _ := os.ReadFile(filepath.Join(root, p)); string(got) != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "etc/motd")); !os.IsNotExist(err) {
		t.Errorf("/etc/motd, deleted by a fragment, exists: %v", err)
	}

	bad := write("bad.yaml", "apiVersion: nodeprov/v1alpha1\nkind: Node\nfiles:\n  path: /etc/x\n")
	r = runNodeprov(t, "", "validate", base, bad)
	if r.code != 2 || !strings.Contains(r.stderr, bad+":4:3: files: "+bad+" gives a mapping here, but "+base+":5:3 gives a list") {
		t.Errorf("a conflicting fragment: exit %d\n%s", r.code, r.stderr)
	}

	r = runNodeprov(t, "", "cloud-init", "--fragment", "--base", base, site)
	if r.code != 0 || !strings.Contains(r.stdout, "path: /etc/nodeprov/node.d/50-user-data.yaml") || strings.Contains(r.stdout, "runcmd") {
		t.Errorf("cloud-init --fragment:\n%s", r)
	}
}

// TestLayeredGoldenImage: an image baked with a base spec (apply --image,
// seal) boots with user data from `nodeprov cloud-init --fragment`, a
// fragment that changes the registry mirror and the sandbox image.
// cloud-init writes it to /etc/nodeprov/node.d, the image's first-boot
// unit applies the base with it merged over, and containerd runs with the
// merged configuration.
func TestLayeredGoldenImage(t *testing.T) {
	a := releaseArtifacts(t)
	srv := a.serve(t, nil)
	addr := strings.TrimPrefix(srv.URL, "http://")
	image := newNodeRoot(t)
	if r := runNodeprov(t, "", "apply", "--image", "--root", image, writeSpec(t, nodeSpec(a, srv.URL, nodeSpecOptions{}))); r.code != 0 {
		t.Fatalf("image apply:\n%s", r)
	}
	if r := runNodeprov(t, "", "seal", "--root", image); r.code != 0 {
		t.Fatalf("seal:\n%s", r)
	}
	fragment := writeSpec(t, `apiVersion: nodeprov/v1alpha1
kind: Node
containerd:
  sandboxImage: mirror.site.example/pause:3.10
  registries:
    docker.io: {mirrors: [{host: "https://mirror.site.example"}]}
`)
	r := runNodeprov(t, "", "cloud-init", "--fragment", "--base", filepath.Join(image, "etc/nodeprov/node.yaml"), fragment)
	if r.code != 0 {
		t.Fatalf("cloud-init --fragment:\n%s", r)
	}
	seedNoCloud(t, image, "iid-layered", r.stdout)
	ns := newNetns(t)
	a.serveIn(t, ns, addr, nil)
	n := bootNode(t, image, bootOptions{ns: ns})
	if st := waitCloudInit(t, n, 3*time.Minute); st.Status != "done" {
		t.Fatalf("cloud-init: %+v", st)
	}
	p := n.unitProps(t, "nodeprov-firstboot.service", "ActiveState", "Result")
	if p["Result"] != "success" {
		t.Fatalf("first-boot unit: %v\n%s", p, n.journal(t, "nodeprov-firstboot.service", 40))
	}
	got := n.mustSh(t, "cat /etc/nodeprov/node.d/50-user-data.yaml >/dev/null && grep -h 'sandbox\\|mirror.site' /etc/containerd/config.toml /etc/containerd/certs.d/docker.io/hosts.toml")
	for _, want := range []string{"mirror.site.example/pause:3.10", "https://mirror.site.example"} {
		if !strings.Contains(got, want) {
			t.Errorf("the provisioned node lacks the fragment's %q:\n%s", want, got)
		}
	}
	if got := strings.TrimSpace(n.sh(t, "systemctl is-active containerd.service").stdout); got != "active" {
		t.Errorf("containerd is %q\n%s", got, n.journal(t, "containerd.service", 20))
	}
	t.Logf("the golden image's node with the user-data fragment merged:\n%s", got)
}
