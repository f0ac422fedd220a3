package units

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/plan"
)

func TestFirstBootUnit(t *testing.T) {
	tests := []struct {
		name, nodeprov, spec, execStart string
		requirePinned                   bool
	}{
		{name: "plain", nodeprov: "/usr/local/bin/nodeprov", spec: "/etc/nodeprov/node.yaml",
			execStart: "/usr/local/bin/nodeprov apply --no-block -o json /etc/nodeprov/node.yaml"},
		{name: "quoted", nodeprov: "/opt/node prov/nodeprov", spec: "/etc/nodeprov/50%$x.yaml",
			execStart: `"/opt/node prov/nodeprov" apply --no-block -o json /etc/nodeprov/50%%$$x.yaml`},
		{name: "require pinned", nodeprov: "/usr/local/bin/nodeprov", spec: "/etc/nodeprov/node.yaml", requirePinned: true,
			execStart: "/usr/local/bin/nodeprov apply --no-block --require-pinned -o json /etc/nodeprov/node.yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := FirstBootUnit(tc.nodeprov, tc.spec, tc.requirePinned)
			f, err := parseStrict(FirstBootUnitName, data, false)
			if err != nil {
				t.Fatalf("first-boot unit does not parse: %v\n%s", err, data)
			}
			if err := checkService([]*unitFile{f}); err != nil {
				t.Fatal(err)
			}
			want := map[[2]string]string{
				{"Unit", "ConditionFirstBoot"}:  "|yes",
				{"Unit", "ConditionPathExists"}: "|!" + FirstBootStamp,
				{"Unit", "Wants"}:               "network-online.target",
				{"Unit", "After"}:               "network-online.target systemd-machine-id-commit.service",
				{"Unit", "Before"}:              "containerd.service kubelet.service",
				{"Service", "Type"}:             "oneshot",
				{"Service", "RemainAfterExit"}:  "yes",
				{"Service", "ExecStart"}:        tc.execStart,
				{"Service", "ExecStartPost"}:    "touch " + FirstBootStamp,
				{"Service", "StandardOutput"}:   "append:" + FirstBootReport,
				{"Service", "StateDirectory"}:   "nodeprov",
				{"Install", "WantedBy"}:         "multi-user.target",
			}
			for k, v := range want {
				if got := last([]*unitFile{f}, k[0], k[1]); got != v {
					t.Errorf("[%s] %s = %q, want %q", k[0], k[1], got, v)
				}
			}
			if got := execBinary(tc.execStart); got != tc.nodeprov {
				t.Errorf("program %q, want %q", got, tc.nodeprov)
			}
		})
	}
}

// firstBootRun sets up a root and a nodeprov binary outside it.
func firstBootRun(t *testing.T) (s Stage, bin string) {
	t.Helper()
	bin = filepath.Join(t.TempDir(), "nodeprov")
	if err := os.WriteFile(bin, []byte("nodeprov v1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return Stage{FirstBoot: &FirstBoot{Binary: bin, Spec: []byte("kind: Node\n"), Lock: []byte("https://x/y sha256:00\n")}}, bin
}

// TestFirstBootOffline installs the first-boot unit into an image root:
// nodeprov, the spec, the lock and the enabled unit; a re-apply changes
// nothing, and a new binary or a run without pins changes only that.
func TestFirstBootOffline(t *testing.T) {
	root, dir := newRoot(t)
	s, bin := firstBootRun(t)
	n := &spec.Node{Units: []spec.Unit{{Name: "a.service", Contents: unitA, Enabled: boolp(true), State: "started"}}}
	env := newEnv(root, n, false, "apply")
	env.Arch = runtime.GOARCH
	actions, err := s.Plan(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"firstboot binary /usr/local/bin/nodeprov: create",
		"firstboot spec /etc/nodeprov/node.yaml: create",
		"firstboot lock /etc/nodeprov/nodeprov.lock: create",
		"unit a.service: create",
		"unit nodeprov-firstboot.service: create",
		"enable a.service: create",
		"enable nodeprov-firstboot.service: create",
		"start a.service: deferred",
	}
	if got := summary(actions); !slices.Equal(got, want) {
		t.Fatalf("actions\n  %q\nwant\n  %q", got, want)
	}
	if err := apply(t, env, actions); err != nil {
		t.Fatal(err)
	}
	for p, w := range map[string]struct {
		data string
		mode os.FileMode
	}{
		FirstBootBinary: {"nodeprov v1\n", 0o755},
		FirstBootSpec:   {"kind: Node\n", 0o600},
		FirstBootLock:   {"https://x/y sha256:00\n", 0o644},
		"/etc/systemd/system/" + FirstBootUnitName: {string(FirstBootUnit(FirstBootBinary, FirstBootSpec, false)), 0o644},
	} {
		st, err := os.Stat(filepath.Join(dir, p))
		data, _ := os.ReadFile(filepath.Join(dir, p))
		if err != nil || string(data) != w.data || st.Mode().Perm() != w.mode {
			t.Errorf("%s: %q %v (%v), want %q %v", p, data, st.Mode().Perm(), err, w.data, w.mode)
		}
	}
	if l := links(t, dir); !slices.Contains(l, "/etc/systemd/system/multi-user.target.wants/"+FirstBootUnitName+" -> /etc/systemd/system/"+FirstBootUnitName) {
		t.Errorf("first-boot unit not enabled: %q", l)
	}

	rerun := func() []*plan.Action {
		t.Helper()
		env := newEnv(root, n, false, "apply")
		actions, err := s.Plan(context.Background(), env)
		if err != nil {
			t.Fatal(err)
		}
		if err := apply(t, env, actions); err != nil {
			t.Fatal(err)
		}
		return actions
	}
	if c := changing(rerun()); len(c) > 0 {
		t.Errorf("re-apply changed: %q", c)
	}

	if err := os.WriteFile(bin, []byte("nodeprov v2, longer\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, FirstBootSpec), 0o644)
	s.FirstBoot.Lock = nil
	got := changing(rerun())
	if len(got) != 3 || !strings.HasPrefix(got[0], "firstboot binary /usr/local/bin/nodeprov: update (contents -> sha256:") ||
		got[1] != "firstboot spec /etc/nodeprov/node.yaml: update (mode 0644 -> 0600)" ||
		got[2] != "firstboot lock /etc/nodeprov/nodeprov.lock: delete (this run used no lock file)" {
		t.Errorf("after a new binary and without pins: %q", got)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, FirstBootBinary)); string(data) != "nodeprov v2, longer\n" {
		t.Errorf("binary = %q", data)
	}
	// Same size, other bytes: the digest decides, not the size.
	if err := os.WriteFile(bin, []byte("nodeprov v3, longer\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := changing(rerun()); len(got) != 1 || !strings.HasPrefix(got[0], "firstboot binary") {
		t.Errorf("same-size binary: %q", got)
	}
	os.Chmod(filepath.Join(dir, FirstBootBinary), 0o700)
	if got := changing(rerun()); !slices.Equal(got, []string{"firstboot binary /usr/local/bin/nodeprov: update (mode 0700 -> 0755)"}) {
		t.Errorf("binary mode drift: %q", got)
	}
	if c := changing(rerun()); len(c) > 0 {
		t.Errorf("re-apply changed: %q", c)
	}
}

// TestFirstBootRunningBinary checks the default: the running executable,
// left alone when the root already has it.
func TestFirstBootRunningBinary(t *testing.T) {
	root, dir := newRoot(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, FirstBootBinary, string(data))
	os.Chmod(filepath.Join(dir, FirstBootBinary), 0o755)
	a, err := planBinary(root, "")
	if err != nil {
		t.Fatal(err)
	}
	if a.Op != plan.OpNone || !strings.HasPrefix(a.Detail, "matches sha256:") {
		t.Errorf("same binary: %s (%s)", a.Op, a.Detail)
	}
}

func TestFirstBootRefusals(t *testing.T) {
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	tests := []struct {
		name  string
		arch  string
		units []spec.Unit
		want  string
	}{
		{name: "another architecture", arch: other, want: "this nodeprov is built for " + runtime.GOARCH + " but the target is " + other},
		{name: "the spec declares the unit", units: []spec.Unit{{Name: FirstBootUnitName, Contents: unitL}}, want: "nodeprov-firstboot.service is nodeprov's own first-boot unit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, _ := newRoot(t)
			s, _ := firstBootRun(t)
			env := newEnv(root, &spec.Node{Units: tc.units}, false, "apply")
			env.Arch = tc.arch
			if _, err := s.Plan(context.Background(), env); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Plan error = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestFirstBootLive checks that a live run enables the first-boot unit but
// never starts or restarts it: it runs nodeprov, which would wait for this
// run's lock.
func TestFirstBootLive(t *testing.T) {
	root, dir := newRoot(t)
	s, _ := firstBootRun(t)
	writeFile(t, dir, "/etc/systemd/system/"+FirstBootUnitName, "[Service]\nType=oneshot\nExecStart=/usr/local/bin/nodeprov apply old.yaml\n[Install]\nWantedBy=multi-user.target\n")
	f := newFake(root)
	f.set(FirstBootUnitName, "active")
	fs := f.stage()
	fs.FirstBoot = s.FirstBoot
	env := newEnv(root, &spec.Node{}, true, "apply", "/usr/local/bin/nodeprov")
	actions, err := fs.Plan(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if err := apply(t, env, actions); err != nil {
		t.Fatal(err)
	}
	if got := f.mutating(); !slices.Equal(got, []string{"enable " + FirstBootUnitName, "daemon-reload"}) {
		t.Errorf("systemd was asked %q", got)
	}
}
