package machineid

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"

	"github.com/nodeprov/nodeprov/stages/host/treetest"
)

const (
	idA = "0123456789abcdef0123456789abcdef"
	idB = "fedcba9876543210fedcba9876543210"
)

// tree describes a root fixture: regular files and symlinks by in-root path.
type tree struct {
	files map[string]string
	links map[string]string
}

// makeRoot builds a fixture in a fresh directory and opens it as a Root.
func makeRoot(t *testing.T, tr tree) (*host.Root, string) {
	t.Helper()
	dir := t.TempDir()
	for p, data := range tr.files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	for p, target := range tr.links {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
	root, err := host.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return root, dir
}

// newEnv returns an environment for the stage with the given policy.
func newEnv(root *host.Root, live bool, policy string, forbidden ...string) *plan.Env {
	return &plan.Env{
		Spec:    &spec.Node{MachineID: spec.MachineID{Policy: policy, Forbidden: forbidden}},
		Root:    root,
		Live:    live,
		Changes: plan.NewChangeSet(),
		Mode:    "apply",
	}
}

// apply runs the actions that change something, as the runner does in
// apply mode, and returns how many ran.
func apply(t *testing.T, env *plan.Env, actions []*plan.Action) int {
	t.Helper()
	n := 0
	for _, a := range actions {
		if !a.Op.Changes() {
			continue
		}
		if a.Run == nil {
			t.Fatalf("%s: %s action without Run", a.Resource, a.Op)
		}
		if err := a.Run(context.Background()); err != nil {
			t.Fatalf("%s: %v", a.Resource, err)
		}
		env.Changes.Record(a)
		n++
	}
	return n
}

// snapshot describes every file, link and directory below dir (treetest),
// one line each, to prove that nothing changed.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	tree := treetest.Take(t, dir)
	var b strings.Builder
	for _, p := range tree.Paths() {
		fmt.Fprintf(&b, "%s %s\n", p, tree[p])
	}
	return b.String()
}

// readHost returns the contents of the in-root file p below dir.
func readHost(t *testing.T, dir, p string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, p))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// mustInspect runs Inspect and fails the test on an error.
func mustInspect(t *testing.T, root *host.Root, live bool, forbidden ...string) *Status {
	t.Helper()
	st, err := Inspect(root, live, forbidden)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// assertDbusOK fails unless the D-Bus copy below dir is absent or a
// symlink to /etc/machine-id.
func assertDbusOK(t *testing.T, dir string) {
	t.Helper()
	target, err := os.Readlink(filepath.Join(dir, DbusPath))
	switch {
	case os.IsNotExist(err):
	case err != nil:
		t.Errorf("dbus copy is not a symlink: %v", err)
	case target != IDPath:
		t.Errorf("dbus copy links to %q, want %q", target, IDPath)
	}
}
