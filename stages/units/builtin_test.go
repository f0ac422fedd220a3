package units

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/plan"
)

func TestContainerdUnit(t *testing.T) {
	// Directives of containerd's own containerd.service.
	upstream := []string{
		"Description=containerd container runtime",
		"Documentation=https://containerd.io",
		"After=network.target local-fs.target dbus.service",
		"ExecStartPre=-/sbin/modprobe overlay",
		"Type=notify",
		"Delegate=yes",
		"KillMode=process",
		"Restart=always",
		"RestartSec=5",
		"LimitNPROC=infinity",
		"LimitCORE=infinity",
		"TasksMax=infinity",
		"OOMScoreAdjust=-999",
		"WantedBy=multi-user.target",
	}
	tests := []struct {
		name      string
		comp      spec.ContainerdComponent
		execStart string
		nofile    bool
	}{
		{name: "2.x default dir", comp: spec.ContainerdComponent{Release: spec.Release{Version: "2.1.4"}}, execStart: "/usr/local/bin/containerd"},
		{name: "2.x custom dir", comp: spec.ContainerdComponent{Release: spec.Release{Version: "2.0.0"}, InstallDir: "/opt/containerd/bin"}, execStart: "/opt/containerd/bin/containerd"},
		{name: "1.7", comp: spec.ContainerdComponent{Release: spec.Release{Version: "1.7.27"}, InstallDir: "/usr/bin"}, execStart: "/usr/bin/containerd", nofile: true},
		{name: "1.6", comp: spec.ContainerdComponent{Release: spec.Release{Version: "1.6.20"}}, execStart: "/usr/local/bin/containerd", nofile: true},
		{name: "dir with a space", comp: spec.ContainerdComponent{Release: spec.Release{Version: "2.1.4"}, InstallDir: "/opt/my bin"}, execStart: `"/opt/my bin/containerd"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := ContainerdUnit(&tc.comp)
			f, err := parseStrict(ContainerdUnitName, data, false)
			if err != nil {
				t.Fatalf("built-in unit does not parse: %v\n%s", err, data)
			}
			if err := checkService([]*unitFile{f}); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(data), plan.ManagedHeader) {
				t.Error("no managed header")
			}
			lines := strings.Split(string(data), "\n")
			for _, d := range upstream {
				if !slices.Contains(lines, d) {
					t.Errorf("missing %q", d)
				}
			}
			if got := f.values("Service", "ExecStart"); len(got) != 1 || got[0] != tc.execStart {
				t.Errorf("ExecStart = %q, want %q", got, tc.execStart)
			}
			if got := execBinary(f.values("Service", "ExecStart")[0]); got != filepath.Join(or(tc.comp.InstallDir, "/usr/local/bin"), "containerd") {
				t.Errorf("program = %q", got)
			}
			if has := slices.Contains(lines, "LimitNOFILE=infinity"); has != tc.nofile {
				t.Errorf("LimitNOFILE=infinity present = %v, want %v", has, tc.nofile)
			}
		})
	}
}

// TestBuiltinWritten checks that containerd.service without contents gets
// the built-in unit when the component is present, and is an error when
// the component does not install containerd.
func TestBuiltinWritten(t *testing.T) {
	root, dir := newRoot(t)
	n := &spec.Node{
		Components: spec.Components{Containerd: &spec.ContainerdComponent{Release: spec.Release{Version: "2.1.4"}, InstallDir: "/usr/local/bin"}},
		Units:      []spec.Unit{{Name: "containerd.service", Enabled: boolp(true), State: "started"}},
	}
	env := newEnv(root, n, false, "apply")
	actions, err := Stage{}.Plan(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if err := apply(t, env, actions); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "etc/systemd/system/containerd.service"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(ContainerdUnit(n.Components.Containerd)) {
		t.Fatalf("written unit differs from the built-in one:\n%s", got)
	}
	if l := links(t, dir); !slices.Equal(l, []string{"/etc/systemd/system/multi-user.target.wants/containerd.service -> /etc/systemd/system/containerd.service"}) {
		t.Fatalf("links = %q", l)
	}

	n.Components.Containerd.Binaries = []string{"ctr"}
	_, err = Stage{}.Plan(context.Background(), newEnv(root, n, false, "apply"))
	if err == nil || !strings.Contains(err.Error(), "does not install it") {
		t.Fatalf("Plan error = %v, want the binaries problem", err)
	}
}

func TestExecArg(t *testing.T) {
	tests := map[string]string{
		"/usr/bin/x":     "/usr/bin/x",
		"a b":            `"a b"`,
		`q"uote`:         `"q\"uote"`,
		`back\slash`:     `"back\\slash"`,
		"100%":           "100%%",
		"$HOME":          "$$HOME",
		"new\nline":      `"new\nline"`,
		"":               `""`,
		"semi;colon":     `"semi;colon"`,
		"tab\there":      `"tab\there"`,
		"ctl\x01":        `"ctl\x01"`,
		"it's":           `"it's"`,
		"/p/with-dash_1": "/p/with-dash_1",
	}
	for in, want := range tests {
		if got := execArg(in); got != want {
			t.Errorf("execArg(%q) = %s, want %s", in, got, want)
		}
	}
}
