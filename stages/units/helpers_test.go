package units

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// newRoot opens a fresh temporary root.
func newRoot(t *testing.T) (*host.Root, string) {
	t.Helper()
	dir := t.TempDir()
	r, err := host.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, dir
}

func writeFile(t *testing.T, dir, p, data string) {
	t.Helper()
	full := filepath.Join(dir, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, dir, p, target string) {
	t.Helper()
	full := filepath.Join(dir, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, full); err != nil {
		t.Fatal(err)
	}
}

// links lists every symlink under dir/etc as "path -> target", with paths
// relative to dir.
func links(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(filepath.Join(dir, "etc"), func(p string, info os.FileInfo, err error) error {
		if err != nil || info.Mode()&os.ModeSymlink == 0 {
			return nil
		}
		target, _ := os.Readlink(p)
		rel, _ := filepath.Rel(dir, p)
		out = append(out, "/"+rel+" -> "+target)
		return nil
	})
	sort.Strings(out)
	return out
}

// newEnv builds an env for n whose earlier stages changed the given paths.
func newEnv(root *host.Root, n *spec.Node, live bool, mode string, changed ...string) *plan.Env {
	cs := plan.NewChangeSet()
	if len(changed) > 0 {
		cs.Record(&plan.Action{Resource: "earlier", Paths: changed})
	}
	return &plan.Env{Spec: n, Root: root, Live: live, Changes: cs, Mode: mode}
}

// apply runs the actions that change something, like the runner does in
// apply mode, and records them.
func apply(t *testing.T, env *plan.Env, actions []*plan.Action) error {
	t.Helper()
	for _, a := range actions {
		if !a.Op.Changes() {
			continue
		}
		if err := a.Run(context.Background()); err != nil {
			return fmt.Errorf("%s: %w", a.Resource, err)
		}
		env.Changes.Record(a)
	}
	return nil
}

// find returns the action for resource, or nil.
func find(actions []*plan.Action, resource string) *plan.Action {
	for _, a := range actions {
		if a.Resource == resource {
			return a
		}
	}
	return nil
}

// summary lists actions as "resource: op".
func summary(actions []*plan.Action) []string {
	out := make([]string, len(actions))
	for i, a := range actions {
		out[i] = a.Resource + ": " + string(a.Op)
	}
	return out
}

// changing lists the actions that would change something.
func changing(actions []*plan.Action) []string {
	var out []string
	for _, a := range actions {
		if a.Op.Changes() {
			out = append(out, a.Resource+": "+string(a.Op)+" ("+a.Detail+")")
		}
	}
	return out
}

func boolp(b bool) *bool { return &b }

// fakeSystemd is a systemd manager in memory. Enable, disable, mask and
// unmask act on the root's files with the offline code, so live runs
// converge the same way a real systemd makes them converge.
type fakeSystemd struct {
	mu      sync.Mutex
	root    *host.Root
	state   map[string]UnitStatus
	results map[string]string // job result by unit; "done" when absent
	// failAfter makes a unit fail right after its start job is done.
	failAfter map[string]bool
	calls     []string
	opened    int
	closed    int
	jobID     int
}

func newFake(root *host.Root) *fakeSystemd {
	return &fakeSystemd{root: root, state: map[string]UnitStatus{}, results: map[string]string{}, failAfter: map[string]bool{}}
}

func (f *fakeSystemd) stage() Stage {
	return Stage{
		Connect: func(context.Context) (Systemd, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.opened++
			return f, nil
		},
		Booted:  func(*host.Root) bool { return true },
		Journal: func(_ context.Context, unit string) (string, error) { return "journal of " + unit + "\nline 2", nil },
	}
}

func (f *fakeSystemd) call(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

// mutating returns the calls that change something (not status reads).
func (f *fakeSystemd) mutating() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if !strings.HasPrefix(c, "status ") {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeSystemd) set(name, active string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state[name] = UnitStatus{LoadState: "loaded", ActiveState: active, SubState: map[string]string{"active": "running", "failed": "failed"}[active]}
}

func (f *fakeSystemd) Reload(ctx context.Context) error { f.call("daemon-reload"); return nil }

func (f *fakeSystemd) unitFile(name string) (string, *unitFile, error) {
	for _, n := range []string{name, templateOf(name)} {
		if n == "" {
			continue
		}
		for _, d := range unitDirs() {
			p := path.Join(d, n)
			data, ok, err := f.root.ReadFile(p)
			if err != nil || !ok {
				continue
			}
			u, err := parseLenient(data)
			return p, u, err
		}
	}
	return "", nil, fmt.Errorf("unit file %s does not exist", name)
}

func (f *fakeSystemd) EnableUnitFiles(ctx context.Context, names []string) error {
	f.call("enable " + strings.Join(names, " "))
	for _, n := range names {
		file, u, err := f.unitFile(n)
		if err != nil {
			return err
		}
		info, err := parseInstall(n, u)
		if err != nil {
			return err
		}
		ls, err := installLinks(n, file, info)
		if err != nil {
			return err
		}
		if err := createLinks(f.root, ls); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeSystemd) DisableUnitFiles(ctx context.Context, names []string) error {
	f.call("disable " + strings.Join(names, " "))
	for _, n := range names {
		file, _, _ := f.unitFile(n)
		paths, err := enabledLinks(f.root, n, file, []string{n})
		if err != nil {
			return err
		}
		if err := removeLinks(f.root, paths); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeSystemd) MaskUnitFiles(ctx context.Context, names []string) error {
	f.call("mask " + strings.Join(names, " "))
	for _, n := range names {
		if err := f.root.Symlink("/dev/null", path.Join(SystemDir, n)); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeSystemd) UnmaskUnitFiles(ctx context.Context, names []string) error {
	f.call("unmask " + strings.Join(names, " "))
	for _, n := range names {
		if err := f.root.Remove(path.Join(SystemDir, n)); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeSystemd) Status(ctx context.Context, name string) (UnitStatus, error) {
	f.call("status " + name)
	f.mu.Lock()
	defer f.mu.Unlock()
	if st, ok := f.state[name]; ok {
		return st, nil
	}
	return UnitStatus{LoadState: "not-found", ActiveState: "inactive", SubState: "dead"}, nil
}

func (f *fakeSystemd) ResetFailed(ctx context.Context, name string) error {
	f.call("reset-failed " + name)
	return nil
}

func (f *fakeSystemd) Job(ctx context.Context, kind JobKind, name string, ch chan<- string) (int, error) {
	mode := "wait"
	if ch == nil {
		mode = "queue"
	}
	f.call(fmt.Sprintf("%s %s (%s)", kind, name, mode))
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobID++
	result := f.results[name]
	if result == "" {
		result = "done"
	}
	switch {
	case kind == JobStop:
		f.state[name] = UnitStatus{LoadState: "loaded", ActiveState: "inactive", SubState: "dead"}
	case result != "done" || f.failAfter[name]:
		f.state[name] = UnitStatus{LoadState: "loaded", ActiveState: "failed", SubState: "failed"}
	default:
		f.state[name] = UnitStatus{LoadState: "loaded", ActiveState: "active", SubState: "running"}
	}
	if ch != nil {
		ch <- result
	}
	return f.jobID, nil
}

func (f *fakeSystemd) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed++
}
