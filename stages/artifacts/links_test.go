package artifacts

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

// TestLinks: an artifact's links are made after its files, inside the
// root (absolute targets are not followed out of it), converge, and
// report drift: a link moved elsewhere or replaced by a file is put back;
// a directory in the way is an error naming the link.
func TestLinks(t *testing.T) {
	dir := t.TempDir()
	root, err := host.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	arts := []spec.Artifact{{Name: "kata", SpecPath: "components.kata", URL: "https://x/kata", Upstream: "https://x/kata",
		Install: spec.Install{Path: "/opt/kata/bin/kata-runtime", Mode: 0o755, Links: map[string]string{
			"/usr/local/bin/kata-runtime": "/opt/kata/bin/kata-runtime",
			"/usr/local/bin/kata-check":   "/opt/kata/bin/kata-runtime",
		}}}}
	planAll := func() ([]*plan.Action, error) {
		env, r := installEnv(root, arts)
		cached(t, r, "kata", []byte("#!/bin/sh\n"))
		return r.planInstall(context.Background(), env)
	}
	ops := func(actions []*plan.Action) string {
		var out []string
		for _, a := range actions {
			if strings.HasPrefix(a.Resource, "link ") {
				out = append(out, a.Resource+" "+string(a.Op))
			}
		}
		return strings.Join(out, ", ")
	}
	apply := func(want string) {
		t.Helper()
		actions, err := planAll()
		if err != nil {
			t.Fatal(err)
		}
		if got := ops(actions); got != want {
			t.Fatalf("links planned as %q, want %q", got, want)
		}
		for i, a := range actions {
			if strings.HasPrefix(a.Resource, "link ") && (a.Parallel || i == 0 || !strings.HasPrefix(actions[i-1].Resource, "install ") && !strings.HasPrefix(actions[i-1].Resource, "link ")) {
				t.Fatalf("%s must follow the installs and not run in parallel", a.Resource)
			}
		}
		runActions(t, actions)
	}

	apply("link /usr/local/bin/kata-check create, link /usr/local/bin/kata-runtime create")
	for _, l := range []string{"usr/local/bin/kata-runtime", "usr/local/bin/kata-check"} {
		if got, err := os.Readlink(filepath.Join(dir, l)); err != nil || got != "/opt/kata/bin/kata-runtime" {
			t.Fatalf("%s -> %q (%v)", l, got, err)
		}
	}
	apply("link /usr/local/bin/kata-check none, link /usr/local/bin/kata-runtime none")

	// Drift: one link re-pointed, the other replaced by a file.
	if err := os.Remove(filepath.Join(dir, "usr/local/bin/kata-runtime")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/bin/false", filepath.Join(dir, "usr/local/bin/kata-runtime")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "usr/local/bin/kata-check")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "usr/local/bin/kata-check"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	apply("link /usr/local/bin/kata-check update, link /usr/local/bin/kata-runtime update")
	apply("link /usr/local/bin/kata-check none, link /usr/local/bin/kata-runtime none")

	if err := os.Remove(filepath.Join(dir, "usr/local/bin/kata-check")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "usr/local/bin/kata-check"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = planAll()
	if want := "components.kata: link /usr/local/bin/kata-check: exists and is a directory"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("plan error = %v, want %q", err, want)
	}
}
