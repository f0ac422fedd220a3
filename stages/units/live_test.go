package units

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nodeprov/nodeprov/spec"
)

// enabledA is a.service (unitA) installed and enabled in a root.
var enabledA = fixture{
	files: map[string]string{"/etc/systemd/system/a.service": unitA},
	links: map[string]string{
		"/etc/systemd/system/aa.service":                        "/etc/systemd/system/a.service",
		"/etc/systemd/system/b.target.requires/a.service":       "/etc/systemd/system/a.service",
		"/etc/systemd/system/multi-user.target.wants/a.service": "/etc/systemd/system/a.service",
	},
}

// with returns f plus more files.
func (f fixture) with(files map[string]string) fixture {
	out := fixture{files: map[string]string{}, links: f.links}
	for p, d := range f.files {
		out.files[p] = d
	}
	for p, d := range files {
		out.files[p] = d
	}
	return out
}

// TestLive runs the stage against a fake systemd: what it is asked to do,
// in which order, and that a second run asks nothing.
func TestLive(t *testing.T) {
	startedA := spec.Unit{Name: "a.service", Contents: unitA, Enabled: boolp(true), State: "started"}
	oldA := strings.Replace(unitA, "/usr/local/bin/a", "/usr/local/bin/a --old", 1)
	tests := []struct {
		name      string
		fixture   fixture
		node      spec.Node
		active    map[string]string // unit -> ActiveState before the run
		reload    []string          // units systemd says need a daemon-reload
		changed   []string          // paths earlier stages changed
		noBlock   bool
		results   map[string]string // job results other than "done"
		failAfter []string
		wantCalls []string
		// wantDetail maps a resource to a part of its reported detail.
		wantDetail map[string]string
		wantErr    []string
	}{
		{
			name: "new units: files and links, one reload, then the jobs",
			node: spec.Node{Units: []spec.Unit{startedA, {Name: "l.service", Contents: unitL, Enabled: boolp(true), State: "started"}}},
			wantCalls: []string{"enable a.service", "enable l.service", "daemon-reload",
				"start a.service (wait)", "start l.service (wait)"},
			wantDetail: map[string]string{"start a.service": "inactive -> active (changed: unit file); done"},
		},
		{
			name:      "converged and running: nothing",
			fixture:   enabledA,
			node:      spec.Node{Units: []spec.Unit{startedA}},
			active:    map[string]string{"a.service": "active"},
			wantCalls: nil,
		},
		{
			name:       "changed unit file restarts the running unit",
			fixture:    enabledA.with(map[string]string{"/etc/systemd/system/a.service": oldA}),
			node:       spec.Node{Units: []spec.Unit{startedA}},
			active:     map[string]string{"a.service": "active"},
			wantCalls:  []string{"daemon-reload", "restart a.service (wait)"},
			wantDetail: map[string]string{"restart a.service": "changed: unit file"},
		},
		{
			name:    "changed drop-in restarts the running unit",
			fixture: enabledA.with(map[string]string{"/etc/systemd/system/a.service.d/10-limit.conf": "[Service]\nLimitNOFILE=1024\n"}),
			node: spec.Node{Units: []spec.Unit{{Name: "a.service", Contents: unitA, Enabled: boolp(true), State: "started",
				Dropins: []spec.Dropin{{Name: "10-limit.conf", Contents: limit}}}}},
			active:     map[string]string{"a.service": "active"},
			wantCalls:  []string{"daemon-reload", "restart a.service (wait)"},
			wantDetail: map[string]string{"restart a.service": "drop-in 10-limit.conf"},
		},
		{
			name:       "installed binary restarts without a daemon-reload",
			fixture:    enabledA,
			node:       spec.Node{Units: []spec.Unit{startedA}},
			active:     map[string]string{"a.service": "active"},
			changed:    []string{"/usr/local/bin/a"},
			wantCalls:  []string{"restart a.service (wait)"},
			wantDetail: map[string]string{"restart a.service": "/usr/local/bin/a"},
		},
		{
			name: "binary installed behind a merged-/usr symlink",
			fixture: fixture{files: map[string]string{"/lib/systemd/system/b.service": "[Service]\nExecStart=/bin/b --x\n"},
				links: map[string]string{"/bin": "usr/bin"}},
			node:      spec.Node{Units: []spec.Unit{{Name: "b.service"}}},
			active:    map[string]string{"b.service": "active"},
			changed:   []string{"/usr/bin/b"},
			wantCalls: []string{"restart b.service (wait)"},
		},
		{
			name:      "binary found in systemd's search path",
			fixture:   fixture{files: map[string]string{"/lib/systemd/system/b.service": "[Service]\nExecStart=b --x\n"}},
			node:      spec.Node{Units: []spec.Unit{{Name: "b.service"}}},
			active:    map[string]string{"b.service": "active"},
			changed:   []string{"/usr/local/bin/b"},
			wantCalls: []string{"restart b.service (wait)"},
		},
		{
			name:       "containerd config restarts containerd.service, listed or not",
			fixture:    fixture{files: map[string]string{"/lib/systemd/system/containerd.service": "[Service]\nExecStart=/usr/bin/containerd\n"}},
			node:       spec.Node{Containerd: &spec.Containerd{}},
			active:     map[string]string{"containerd.service": "active"},
			changed:    []string{"/etc/containerd/config.toml", "/etc/containerd/certs.d/docker.io/hosts.toml"},
			wantCalls:  []string{"restart containerd.service (wait)"},
			wantDetail: map[string]string{"restart containerd.service": "changed: /etc/containerd/certs.d/docker.io/hosts.toml, /etc/containerd/config.toml; done"},
		},
		{
			name:      "proxy drop-in from the containerd stage: reload and restart",
			fixture:   fixture{files: map[string]string{"/lib/systemd/system/containerd.service": "[Service]\nExecStart=/usr/bin/containerd\n"}},
			node:      spec.Node{Containerd: &spec.Containerd{}},
			active:    map[string]string{"containerd.service": "active"},
			changed:   []string{"/etc/systemd/system/containerd.service.d/http-proxy.conf"},
			wantCalls: []string{"daemon-reload", "restart containerd.service (wait)"},
		},
		{
			name:      "restartOn paths: a file below a listed directory",
			fixture:   fixture{files: map[string]string{"/lib/systemd/system/l.service": unitL}},
			node:      spec.Node{Units: []spec.Unit{{Name: "l.service", RestartOn: []string{"/etc/l/", "/etc/l.env"}}}},
			active:    map[string]string{"l.service": "active"},
			changed:   []string{"/etc/l/sub/l.conf"},
			wantCalls: []string{"restart l.service (wait)"},
		},
		{
			name: "changes to anything else restart nothing",
			fixture: enabledA.with(map[string]string{"/lib/systemd/system/l.service": unitL,
				"/lib/systemd/system/containerd.service": "[Service]\nExecStart=/usr/bin/containerd\n"}),
			node: spec.Node{Units: []spec.Unit{startedA, {Name: "l.service", State: "started", RestartOn: []string{"/etc/l"}},
				{Name: "containerd.service", State: "started"}}},
			active: map[string]string{"a.service": "active", "l.service": "active", "containerd.service": "active"},
			changed: []string{"/etc/lx.conf", "/usr/local/bin/ab", "/usr/local/bin/a.old", "/etc/containerd-other/x",
				"/etc/systemd/system/other.service", "/etc/systemd/system/aa.service.d/x.conf"},
			wantCalls: []string{"daemon-reload"},
		},
		{
			name:       "a stopped unit is started, not restarted",
			fixture:    enabledA.with(map[string]string{"/etc/systemd/system/a.service": oldA}),
			node:       spec.Node{Units: []spec.Unit{startedA}},
			active:     map[string]string{"a.service": "inactive"},
			changed:    []string{"/usr/local/bin/a"},
			wantCalls:  []string{"daemon-reload", "start a.service (wait)"},
			wantDetail: map[string]string{"start a.service": "inactive -> active (changed: unit file, /usr/local/bin/a)"},
		},
		{
			name:       "a stopped unit with state unchanged stays stopped",
			fixture:    enabledA,
			node:       spec.Node{Units: []spec.Unit{{Name: "a.service", Contents: unitA}}},
			active:     map[string]string{"a.service": "inactive"},
			changed:    []string{"/usr/local/bin/a"},
			wantCalls:  nil,
			wantDetail: map[string]string{"restart a.service": "not running: changes apply when it starts"},
		},
		{
			name:      "a failed unit is reset and started",
			fixture:   enabledA,
			node:      spec.Node{Units: []spec.Unit{startedA}},
			active:    map[string]string{"a.service": "failed"},
			wantCalls: []string{"reset-failed a.service", "start a.service (wait)"},
		},
		{
			name:      "state stopped stops a running unit",
			fixture:   enabledA,
			node:      spec.Node{Units: []spec.Unit{{Name: "a.service", Contents: unitA, State: "stopped"}}},
			active:    map[string]string{"a.service": "active"},
			changed:   []string{"/usr/local/bin/a"},
			wantCalls: []string{"stop a.service (wait)"},
		},
		{
			name:       "--no-block queues the jobs",
			node:       spec.Node{Units: []spec.Unit{startedA}},
			noBlock:    true,
			wantCalls:  []string{"enable a.service", "daemon-reload", "start a.service (queue)"},
			wantDetail: map[string]string{"start a.service": "queued (job 1, not waited for: --no-block)"},
		},
		{
			name:      "--no-block restarts without waiting",
			fixture:   enabledA,
			node:      spec.Node{Units: []spec.Unit{startedA}},
			active:    map[string]string{"a.service": "active"},
			changed:   []string{"/usr/local/bin/a"},
			noBlock:   true,
			wantCalls: []string{"restart a.service (queue)"},
		},
		{
			name:      "a failed job is an error with the journal",
			node:      spec.Node{Units: []spec.Unit{startedA}},
			results:   map[string]string{"a.service": "failed"},
			wantCalls: []string{"enable a.service", "daemon-reload", "start a.service (wait)"},
			wantErr:   []string{"start a.service: start a.service: job failed (see systemctl status a.service); last journal lines:\n    journal of a.service\n    line 2"},
		},
		{
			name:      "a unit that fails right after starting is an error with the journal",
			fixture:   enabledA,
			node:      spec.Node{Units: []spec.Unit{startedA}},
			active:    map[string]string{"a.service": "active"},
			changed:   []string{"/usr/local/bin/a"},
			failAfter: []string{"a.service"},
			wantCalls: []string{"restart a.service (wait)"},
			wantErr:   []string{"restart a.service: job done, but the unit failed right after", "journal of a.service"},
		},
		{
			name:      "mask and stop",
			fixture:   fixture{files: map[string]string{"/lib/systemd/system/l.service": unitL}},
			node:      spec.Node{Units: []spec.Unit{{Name: "l.service", Masked: true, State: "stopped"}}},
			active:    map[string]string{"l.service": "active"},
			wantCalls: []string{"mask l.service", "daemon-reload", "stop l.service (wait)"},
		},
		{
			name:      "unmask and enable",
			fixture:   fixture{files: map[string]string{"/lib/systemd/system/l.service": unitL}, links: map[string]string{"/etc/systemd/system/l.service": "/dev/null"}},
			node:      spec.Node{Units: []spec.Unit{{Name: "l.service", Enabled: boolp(true)}}},
			wantCalls: []string{"unmask l.service", "enable l.service", "daemon-reload"},
		},
		{
			name:      "disable",
			fixture:   enabledA,
			node:      spec.Node{Units: []spec.Unit{{Name: "a.service", Contents: unitA, Enabled: boolp(false)}}},
			active:    map[string]string{"a.service": "active"},
			wantCalls: []string{"disable a.service", "daemon-reload"},
		},
		{
			name:    "a changed template restarts its running instance",
			fixture: fixture{files: map[string]string{"/etc/systemd/system/t@.service": strings.Replace(unitT, "%i", "%i --old", 1)}},
			node: spec.Node{Units: []spec.Unit{{Name: "t@.service", Contents: unitT},
				{Name: "t@x.service", State: "started"}, {Name: "t@y.service"}}},
			active:     map[string]string{"t@x.service": "active", "t@y.service": "active"},
			wantCalls:  []string{"daemon-reload", "restart t@x.service (wait)", "restart t@y.service (wait)"},
			wantDetail: map[string]string{"restart t@x.service": "/etc/systemd/system/t@.service"},
		},
		{
			name:      "unit files systemd has not loaded yet: reload and restart",
			fixture:   enabledA,
			node:      spec.Node{Units: []spec.Unit{startedA}},
			active:    map[string]string{"a.service": "active"},
			reload:    []string{"a.service"},
			wantCalls: []string{"daemon-reload", "restart a.service (wait)"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, dir := newRoot(t)
			tc.fixture.make(t, dir)
			f := newFake(root)
			for u, st := range tc.active {
				f.set(u, st)
			}
			for _, u := range tc.reload {
				st := f.state[u]
				st.NeedDaemonReload = true
				f.state[u] = st
			}
			for u, r := range tc.results {
				f.results[u] = r
			}
			for _, u := range tc.failAfter {
				f.failAfter[u] = true
			}
			s := f.stage()
			s.NoBlock = tc.noBlock
			n := tc.node
			env := newEnv(root, &n, true, "apply", tc.changed...)
			actions, err := s.Plan(context.Background(), env)
			if err != nil {
				t.Fatal(err)
			}
			if w := env.Warnings(); len(w) > 0 {
				t.Errorf("warnings: %q", w)
			}
			err = apply(t, env, actions)
			if got := f.mutating(); !slices.Equal(got, tc.wantCalls) {
				t.Errorf("systemd was asked\n  %q\nwant\n  %q", got, tc.wantCalls)
			}
			if f.opened != f.closed {
				t.Errorf("%d connections opened, %d closed", f.opened, f.closed)
			}
			if tc.wantErr != nil {
				for _, w := range tc.wantErr {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("error = %v, want %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for res, want := range tc.wantDetail {
				a := find(actions, res)
				if a == nil {
					t.Errorf("no action %s in %q", res, summary(actions))
					continue
				}
				d := a.Detail
				if a.Result != nil && a.Op.Changes() {
					d = a.Result()
				}
				if !strings.Contains(d, want) {
					t.Errorf("%s: detail %q, want %q", res, d, want)
				}
			}

			// The next run (nothing changed by earlier stages, systemd
			// loaded everything) asks systemd for nothing.
			for u, st := range f.state {
				st.NeedDaemonReload = false
				f.state[u] = st
			}
			calls := len(f.mutating())
			again, err := s.Plan(context.Background(), newEnv(root, &n, true, "apply"))
			if err != nil {
				t.Fatal(err)
			}
			if c := changing(again); len(c) > 0 {
				t.Errorf("second run would change: %q", c)
			}
			if err := apply(t, env, again); err != nil {
				t.Fatal(err)
			}
			if got := f.mutating(); len(got) != calls {
				t.Errorf("second run asked systemd: %q", got[calls:])
			}
		})
	}
}

// TestLivePlanChangesNothing checks that plan and check read systemd's
// state but ask it to change nothing.
func TestLivePlanChangesNothing(t *testing.T) {
	root, dir := newRoot(t)
	enabledA.with(map[string]string{"/etc/systemd/system/a.service": "[Service]\nExecStart=/bin/old\n"}).make(t, dir)
	f := newFake(root)
	f.set("a.service", "active")
	actions, err := f.stage().Plan(context.Background(), newEnv(root, &spec.Node{Units: []spec.Unit{{Name: "a.service", Contents: unitA, Enabled: boolp(true), State: "started"}}}, true, "plan"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"unit a.service: update (contents)", "daemon-reload: update (changed: unit a.service)", "restart a.service: update (changed: unit file)"}
	if got := changing(actions); !slices.Equal(got, want) {
		t.Errorf("plan = %q, want %q", got, want)
	}
	if got := f.mutating(); len(got) > 0 {
		t.Errorf("plan asked systemd: %q", got)
	}
}

// TestLiveRestartsWhatAKilledRunLeft: a run that installed a program and
// was killed before its restart leaves the unit running old code; the next
// run finds nothing to change, and restarts the unit because its program
// was written after the unit started. A program older than the start, or
// with a time in the future, restarts nothing.
func TestLiveRestartsWhatAKilledRunLeft(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name        string
		started     time.Time
		binaryMtime time.Time
		wantRestart bool
	}{
		{"program written after the start", now.Add(-time.Hour), now.Add(-time.Minute), true},
		{"program older than the start", now.Add(-time.Minute), now.Add(-time.Hour), false},
		{"program time in the future", now.Add(-time.Hour), now.Add(time.Hour), false},
		{"start time unknown", time.Time{}, now.Add(-time.Minute), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, dir := newRoot(t)
			enabledA.with(map[string]string{"/usr/local/bin/a": "program"}).make(t, dir)
			// The unit file is older than every start; only the program's
			// time varies.
			for p, mtime := range map[string]time.Time{"etc/systemd/system/a.service": now.Add(-3 * time.Hour), "usr/local/bin/a": tt.binaryMtime} {
				if err := os.Chtimes(filepath.Join(dir, p), mtime, mtime); err != nil {
					t.Fatal(err)
				}
			}
			f := newFake(root)
			f.set("a.service", "active")
			st := f.state["a.service"]
			st.ActiveEnter = tt.started
			f.state["a.service"] = st
			actions, err := f.stage().Plan(context.Background(), newEnv(root, &spec.Node{Units: []spec.Unit{{Name: "a.service", Contents: unitA, Enabled: boolp(true), State: "started"}}}, true, "apply"))
			if err != nil {
				t.Fatal(err)
			}
			got := changing(actions)
			restart := slices.ContainsFunc(got, func(s string) bool {
				return strings.HasPrefix(s, "restart a.service") && strings.Contains(s, "/usr/local/bin/a was written after the unit started")
			})
			if restart != tt.wantRestart || (!tt.wantRestart && len(got) > 0) {
				t.Errorf("plan = %q, want restart %v", got, tt.wantRestart)
			}
		})
	}
}
