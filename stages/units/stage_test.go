package units

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

const (
	unitA = "[Unit]\nDescription=a\n[Service]\nExecStart=/usr/local/bin/a\n[Install]\nWantedBy=multi-user.target\nRequiredBy=b.target\nAlias=aa.service\n"
	unitT = "[Service]\nExecStart=/usr/local/bin/t %i\n[Install]\nWantedBy=multi-user.target\nAlias=tt@.service\nDefaultInstance=def\n"
	unitL = "[Service]\nExecStart=/usr/bin/l\n[Install]\nWantedBy=multi-user.target\n"
	limit = "[Service]\nLimitNOFILE=1048576\n"
)

// fixture is a root prepared before a test: files and symlinks by in-root
// path.
type fixture struct {
	files map[string]string
	links map[string]string
}

func (f fixture) make(t *testing.T, dir string) {
	t.Helper()
	for p, data := range f.files {
		writeFile(t, dir, p, data)
	}
	for p, target := range f.links {
		symlink(t, dir, p, target)
	}
}

// TestOffline applies units to an image root: files written, links from
// [Install] created or removed, masks, and start/restart deferred; a second
// apply changes nothing.
func TestOffline(t *testing.T) {
	tests := []struct {
		name    string
		fixture fixture
		units   []spec.Unit
		changed []string // paths earlier stages changed
		// wantLinks are all symlinks under /etc after the apply.
		wantLinks []string
		// wantFiles are files that must exist with these contents.
		wantFiles map[string]string
		// wantGone are paths that must not exist after the apply.
		wantGone []string
		// wantActions are "resource: op" that the first plan must contain.
		wantActions []string
		wantErr     string
	}{
		{
			name:  "unit file and drop-ins written and enabled",
			units: []spec.Unit{{Name: "a.service", Contents: unitA, Enabled: boolp(true), State: "started", Dropins: []spec.Dropin{{Name: "10-limit.conf", Contents: limit}}}},
			wantLinks: []string{
				"/etc/systemd/system/aa.service -> /etc/systemd/system/a.service",
				"/etc/systemd/system/b.target.requires/a.service -> /etc/systemd/system/a.service",
				"/etc/systemd/system/multi-user.target.wants/a.service -> /etc/systemd/system/a.service",
			},
			wantFiles:   map[string]string{"/etc/systemd/system/a.service": unitA, "/etc/systemd/system/a.service.d/10-limit.conf": limit},
			wantActions: []string{"unit a.service: create", "dropin a.service/10-limit.conf: create", "enable a.service: create", "start a.service: deferred"},
		},
		{
			name: "template with DefaultInstance and an instance of it from the same spec",
			units: []spec.Unit{
				{Name: "t@x.service", Enabled: boolp(true), State: "started"},
				{Name: "t@.service", Contents: unitT, Enabled: boolp(true)},
			},
			wantLinks: []string{
				"/etc/systemd/system/multi-user.target.wants/t@def.service -> /etc/systemd/system/t@.service",
				"/etc/systemd/system/multi-user.target.wants/t@x.service -> /etc/systemd/system/t@.service",
				"/etc/systemd/system/tt@.service -> /etc/systemd/system/t@.service",
				"/etc/systemd/system/tt@x.service -> /etc/systemd/system/t@.service",
			},
			wantActions: []string{"enable t@x.service: create", "enable t@.service: create", "start t@x.service: deferred"},
		},
		{
			name:        "a distribution's unit is enabled where it is",
			fixture:     fixture{files: map[string]string{"/lib/systemd/system/l.service": unitL}},
			units:       []spec.Unit{{Name: "l.service", Enabled: boolp(true)}},
			wantLinks:   []string{"/etc/systemd/system/multi-user.target.wants/l.service -> /lib/systemd/system/l.service"},
			wantActions: []string{"enable l.service: create"},
		},
		{
			name:        "a link to another file is replaced",
			fixture:     fixture{files: map[string]string{"/lib/systemd/system/l.service": unitL}, links: map[string]string{"/etc/systemd/system/multi-user.target.wants/l.service": "/opt/old/l.service"}},
			units:       []spec.Unit{{Name: "l.service", Enabled: boolp(true)}},
			wantLinks:   []string{"/etc/systemd/system/multi-user.target.wants/l.service -> /lib/systemd/system/l.service"},
			wantActions: []string{"enable l.service: create"},
		},
		{
			name: "disable removes every link and the directories left empty",
			fixture: fixture{
				files: map[string]string{"/etc/systemd/system/a.service": unitA, "/lib/systemd/system/l.service": unitL},
				links: map[string]string{
					"/etc/systemd/system/aa.service":                           "/etc/systemd/system/a.service",
					"/etc/systemd/system/b.target.requires/a.service":          "/etc/systemd/system/a.service",
					"/etc/systemd/system/multi-user.target.wants/a.service":    "/etc/systemd/system/a.service",
					"/etc/systemd/system/sockets.target.wants/a.service":       "/lib/systemd/system/a.service",
					"/etc/systemd/system/multi-user.target.wants/l.service":    "/lib/systemd/system/l.service",
					"/etc/systemd/system/other.target.wants/unrelated.service": "/lib/systemd/system/unrelated.service",
				},
			},
			units: []spec.Unit{{Name: "a.service", Contents: unitA, Enabled: boolp(false)}},
			wantLinks: []string{
				"/etc/systemd/system/multi-user.target.wants/l.service -> /lib/systemd/system/l.service",
				"/etc/systemd/system/other.target.wants/unrelated.service -> /lib/systemd/system/unrelated.service",
			},
			wantGone:    []string{"/etc/systemd/system/b.target.requires", "/etc/systemd/system/sockets.target.wants"},
			wantActions: []string{"unit a.service: none", "disable a.service: delete"},
		},
		{
			name:        "mask links to /dev/null and leaves the enablement alone",
			fixture:     fixture{files: map[string]string{"/lib/systemd/system/l.service": unitL}, links: map[string]string{"/etc/systemd/system/multi-user.target.wants/l.service": "/lib/systemd/system/l.service"}},
			units:       []spec.Unit{{Name: "l.service", Masked: true, State: "stopped"}},
			wantLinks:   []string{"/etc/systemd/system/l.service -> /dev/null", "/etc/systemd/system/multi-user.target.wants/l.service -> /lib/systemd/system/l.service"},
			wantActions: []string{"mask l.service: create", "stop l.service: deferred"},
		},
		{
			name:        "mask of a unit without a unit file",
			units:       []spec.Unit{{Name: "ghost.service", Masked: true}},
			wantLinks:   []string{"/etc/systemd/system/ghost.service -> /dev/null"},
			wantActions: []string{"mask ghost.service: create"},
		},
		{
			name:        "mask replaces the unit file nodeprov wrote",
			fixture:     fixture{files: map[string]string{"/etc/systemd/system/m.service": plan.ManagedHeader + unitL}},
			units:       []spec.Unit{{Name: "m.service", Masked: true}},
			wantLinks:   []string{"/etc/systemd/system/m.service -> /dev/null"},
			wantActions: []string{"mask m.service: update"},
		},
		{
			name:    "mask refuses an operator's unit file",
			fixture: fixture{files: map[string]string{"/etc/systemd/system/m.service": unitL}},
			units:   []spec.Unit{{Name: "m.service", Masked: true}},
			wantErr: "unit m.service (units[0]): cannot mask: /etc/systemd/system/m.service is a unit file nodeprov did not write",
		},
		{
			name:        "unmask and enable",
			fixture:     fixture{files: map[string]string{"/lib/systemd/system/l.service": unitL}, links: map[string]string{"/etc/systemd/system/l.service": "/dev/null"}},
			units:       []spec.Unit{{Name: "l.service", Enabled: boolp(true)}},
			wantLinks:   []string{"/etc/systemd/system/multi-user.target.wants/l.service -> /lib/systemd/system/l.service"},
			wantActions: []string{"unmask l.service: delete", "enable l.service: create"},
		},
		{
			name:        "contents replace a mask",
			fixture:     fixture{links: map[string]string{"/etc/systemd/system/a.service": "/dev/null"}},
			units:       []spec.Unit{{Name: "a.service", Contents: unitA}},
			wantFiles:   map[string]string{"/etc/systemd/system/a.service": unitA},
			wantActions: []string{"unit a.service: update"},
		},
		{
			name:        "restart of a changed unit is deferred",
			fixture:     fixture{files: map[string]string{"/lib/systemd/system/l.service": unitL}},
			units:       []spec.Unit{{Name: "l.service"}},
			changed:     []string{"/usr/bin/l"},
			wantActions: []string{"restart l.service: deferred"},
		},
		{
			name:        "started but not enabled waits for a live apply",
			units:       []spec.Unit{{Name: "a.service", Contents: unitA, State: "started"}},
			wantActions: []string{"unit a.service: create", "start a.service: deferred"},
		},
		{
			name: "a malformed unit stops the stage before anything is written",
			units: []spec.Unit{
				{Name: "a.service", Contents: unitA, Enabled: boolp(true)},
				{Name: "b.service", Contents: "[Service]\nExecStart=/bin/b\nWantedBy=multi-user.target\n[Instal]\n"},
			},
			wantErr: "unit b.service (units[1]): line 4: unknown section [Instal]",
		},
		{
			name:    "a link path holding a regular file is an error",
			fixture: fixture{files: map[string]string{"/etc/systemd/system/multi-user.target.wants/a.service": "x"}},
			units:   []spec.Unit{{Name: "a.service", Contents: unitA, Enabled: boolp(true)}},
			wantErr: "multi-user.target.wants/a.service exists and is a regular file, not a symlink",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, dir := newRoot(t)
			tc.fixture.make(t, dir)
			before := links(t, dir)
			n := &spec.Node{Units: tc.units}
			env := newEnv(root, n, false, "apply", tc.changed...)
			actions, err := Stage{}.Plan(context.Background(), env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Plan error = %v, want %q", err, tc.wantErr)
				}
				if got := links(t, dir); !slices.Equal(got, before) {
					t.Errorf("links changed by a failed plan: %q", got)
				}
				if _, err := os.Stat(filepath.Join(dir, "etc/systemd/system/a.service")); tc.fixture.files["/etc/systemd/system/a.service"] == "" && err == nil {
					t.Error("a unit file was written although the stage failed")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := summary(actions)
			for _, w := range tc.wantActions {
				if !slices.Contains(got, w) {
					t.Errorf("actions %q lack %q", got, w)
				}
			}
			for _, a := range actions {
				if strings.HasPrefix(a.Resource, "daemon-reload") || ((strings.HasPrefix(a.Resource, "start ") || strings.HasPrefix(a.Resource, "restart ") || strings.HasPrefix(a.Resource, "stop ")) && a.Op != plan.OpDeferred) {
					t.Errorf("offline plan has a live step: %s: %s", a.Resource, a.Op)
				}
			}
			if err := apply(t, env, actions); err != nil {
				t.Fatal(err)
			}
			if tc.wantLinks != nil {
				if got := links(t, dir); !slices.Equal(got, tc.wantLinks) {
					t.Errorf("links =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.wantLinks, "\n  "))
				}
			}
			for p, want := range tc.wantFiles {
				data, err := os.ReadFile(filepath.Join(dir, p))
				if err != nil || string(data) != want {
					t.Errorf("%s = %q, %v; want %q", p, data, err, want)
				}
			}
			for _, p := range tc.wantGone {
				if _, err := os.Lstat(filepath.Join(dir, p)); err == nil {
					t.Errorf("%s still exists", p)
				}
			}

			again, err := Stage{}.Plan(context.Background(), newEnv(root, n, false, "apply"))
			if err != nil {
				t.Fatal(err)
			}
			if c := changing(again); len(c) > 0 {
				t.Errorf("second apply would change: %q", c)
			}
		})
	}
}

// TestOfflineStaticUnit checks that enabling a unit without [Install] is a
// warning and changes nothing, as systemctl enable only warns.
func TestOfflineStaticUnit(t *testing.T) {
	root, dir := newRoot(t)
	env := newEnv(root, &spec.Node{Units: []spec.Unit{{Name: "s.service", Contents: "[Service]\nExecStart=/bin/s\n", Enabled: boolp(true)}}}, false, "apply")
	actions, err := Stage{}.Plan(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if a := find(actions, "enable s.service"); a == nil || a.Op != plan.OpNone {
		t.Fatalf("enable of a static unit: %v", summary(actions))
	}
	if w := env.Warnings(); len(w) != 1 || !strings.Contains(w[0], "no [Install] section") {
		t.Errorf("warnings = %q", w)
	}
	if err := apply(t, env, actions); err != nil {
		t.Fatal(err)
	}
	if l := links(t, dir); len(l) != 0 {
		t.Errorf("links = %q", l)
	}
}

// TestLiveUnitsWithoutSystemd checks that a live run on a host where
// systemd does not run (a container, this machine) links like an image
// root, says so, and defers the jobs.
func TestLiveUnitsWithoutSystemd(t *testing.T) {
	root, dir := newRoot(t)
	env := newEnv(root, &spec.Node{Units: []spec.Unit{{Name: "a.service", Contents: unitA, Enabled: boolp(true), State: "started"}}}, true, "apply")
	s := Stage{Booted: func(*host.Root) bool { return false }}
	actions, err := s.Plan(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if a := find(actions, "start a.service"); a == nil || a.Op != plan.OpDeferred {
		t.Fatalf("start without systemd: %v", summary(actions))
	}
	if w := env.Warnings(); len(w) != 1 || !strings.Contains(w[0], "systemd is not running") {
		t.Errorf("warnings = %q", w)
	}
	if err := apply(t, env, actions); err != nil {
		t.Fatal(err)
	}
	if l := links(t, dir); len(l) != 3 {
		t.Errorf("links = %q", l)
	}
}
