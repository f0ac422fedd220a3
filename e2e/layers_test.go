package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
