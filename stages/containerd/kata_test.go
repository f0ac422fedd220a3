package containerd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

const kataSpec = `apiVersion: nodeprov/v1alpha1
kind: Node
components:
  kata: {version: 3.32.0, sha256: {amd64: ` + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" + `}}
containerd:
  runtimes:
    kata: {type: io.containerd.kata.v2}
`

// TestKataChecks runs a stand-in kata-runtime installed in the root: its
// arguments (the handler's configuration, no network checks) and its
// verdict reach the report; a failure is a warning, never an error;
// offline the check is deferred.
func TestKataChecks(t *testing.T) {
	for _, tt := range []struct {
		name, script string
		live         bool
		want         string
		warn         bool
	}{
		{"ok", "echo 'System is capable of running Kata Containers'\n", true, "ok: System is capable of running Kata Containers", false},
		{"fails", "echo \"args $*\" >&2\necho 'ERROR: System is not capable of running Kata Containers' >&2\nexit 1\n", true,
			"failed: %ROOT%/opt/kata/bin/kata-runtime --config %ROOT%/opt/kata/share/defaults/kata-containers/configuration-qemu.toml check --no-network-checks: exit status 1: " +
				"args --config %ROOT%/opt/kata/share/defaults/kata-containers/configuration-qemu.toml check --no-network-checks | ERROR: System is not capable of running Kata Containers", true},
		{"offline", "exit 1\n", false, "runs on a live apply (kata-runtime check)", false},
		{"not installed", "", true, "not run: /opt/kata/bin/kata-runtime is not installed", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.script != "" {
				p := filepath.Join(dir, "opt/kata/bin/kata-runtime")
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte("#!/bin/sh\n"+tt.script), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			root, err := host.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			env := &plan.Env{Spec: loadSpec(t, kataSpec), Root: root, Live: tt.live, Changes: plan.NewChangeSet()}
			actions := kataChecks(context.Background(), env)
			if len(actions) != 1 {
				t.Fatalf("%d actions, want 1", len(actions))
			}
			a := actions[0]
			want := strings.ReplaceAll(tt.want, "%ROOT%", dir)
			if a.Resource != "kata-runtime check kata" || a.Detail != want || a.Op.Changes() {
				t.Errorf("action %s %s %q\nwant detail %q", a.Resource, a.Op, a.Detail, want)
			}
			if w := strings.Join(env.Warnings(), "\n"); tt.warn != strings.Contains(w, "kata-runtime check says this host cannot run Kata pods") {
				t.Errorf("warnings %q (want a kata warning: %v)", w, tt.warn)
			}
		})
	}
}
