package stages

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/files"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/kernel"
	"github.com/nodeprov/nodeprov/stages/plan"
)

const testSpec = `apiVersion: nodeprov/v1alpha1
kind: Node
kernel:
  modules: [overlay, br_netfilter]
  sysctl:
    net.ipv4.ip_forward: "1"
    net.core.somaxconn: 4096
files:
  - path: /etc/crictl.yaml
    contents: "runtime-endpoint: unix:///run/containerd/containerd.sock\n"
  - path: /etc/secret
    mode: "0600"
    contents: "token-1\n"
  - path: /var/lib/data
    type: directory
    mode: "0750"
  - path: /etc/alt
    type: symlink
    target: /etc/crictl.yaml
`

// fakeKernel builds a /proc and /sys tree under dir with the given sysctl
// values and loaded modules, and returns a host.Kernel reading it.
func fakeKernel(t testing.TB, dir string, sysctls map[string]string, loaded ...string) *host.Kernel {
	t.Helper()
	k := &host.Kernel{ProcDir: filepath.Join(dir, "proc"), SysDir: filepath.Join(dir, "sys"),
		ModulesDir: filepath.Join(dir, "lib/modules"), Release: "6.1.0-test", Modprobe: "/bin/false"}
	for key, val := range sysctls {
		p, err := host.SysctlPath(key)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(k.ProcDir, "sys", p), val+"\n")
	}
	var mods strings.Builder
	for _, m := range loaded {
		fmt.Fprintf(&mods, "%s 16384 0 - Live 0x0000000000000000\n", m)
	}
	writeFile(t, filepath.Join(k.ProcDir, "modules"), mods.String())
	return k
}

func writeFile(t testing.TB, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func load(t testing.TB, src string) *spec.Document {
	t.Helper()
	doc, err := spec.Load("node.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// testStages leaves out preflight, which probes the real host (its own
// tests use fake trees).
var testStages = []string{"kernel", "files", "containerd"}

func execute(t testing.TB, mode Mode, doc *spec.Document, root string, k plan.Kernel) *Report {
	t.Helper()
	live := true
	return Execute(context.Background(), Options{Mode: mode, Doc: doc, RootDir: root, Live: &live, Kernel: k, Stages: testStages})
}

func statuses(r *Report) map[string]Status {
	out := map[string]Status{}
	for _, s := range r.Stages {
		for _, a := range s.Actions {
			out[a.Resource] = a.Status
		}
	}
	return out
}

func TestApplyConvergesAndReapplyChangesNothing(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.Mkdir(root, 0o755)
	k := fakeKernel(t, dir, map[string]string{"net.ipv4.ip_forward": "0", "net.core.somaxconn": "128"}, "overlay", "br_netfilter")
	doc := load(t, testSpec)

	first := execute(t, ModeApply, doc, root, k)
	if !first.OK {
		t.Fatalf("first apply failed: %+v", first.Error)
	}
	want := map[string]Status{
		"sysctl net.ipv4.ip_forward":                     StatusChanged,
		"sysctl net.core.somaxconn":                      StatusChanged,
		"module overlay":                                 StatusUnchanged,
		"modules-load /etc/modules-load.d/nodeprov.conf": StatusChanged,
		"sysctl.d /etc/sysctl.d/99-nodeprov.conf":        StatusChanged,
		"file /etc/crictl.yaml":                          StatusChanged,
		"directory /var/lib/data":                        StatusChanged,
		"symlink /etc/alt":                               StatusChanged,
	}
	got := statuses(first)
	for res, st := range want {
		if got[res] != st {
			t.Errorf("first apply: %s = %q, want %q", res, got[res], st)
		}
	}
	if v, _, _ := k.ReadSysctl("net.core.somaxconn"); v != "4096" {
		t.Errorf("somaxconn = %q after apply, want 4096", v)
	}
	conf, _ := os.ReadFile(filepath.Join(root, "etc/sysctl.d/99-nodeprov.conf"))
	if string(conf) != plan.ManagedHeader+"net.core.somaxconn = 4096\nnet.ipv4.ip_forward = 1\n" {
		t.Errorf("sysctl.d file =\n%s", conf)
	}
	st, err := os.Stat(filepath.Join(root, "etc/secret"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("secret mode = %v, %v; want 0600", st.Mode(), err)
	}

	second := execute(t, ModeApply, doc, root, k)
	if !second.OK || second.Changed != 0 {
		t.Fatalf("second apply: ok=%v changed=%d error=%+v", second.OK, second.Changed, second.Error)
	}
	for res, st := range statuses(second) {
		if st != StatusUnchanged {
			t.Errorf("second apply: %s = %s, want unchanged", res, st)
		}
	}
	check := execute(t, ModeCheck, doc, root, k)
	if !check.OK || check.Drift {
		t.Errorf("check after apply: ok=%v drift=%v", check.OK, check.Drift)
	}
}

func TestCheckNamesDriftAndApplyRepairs(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.Mkdir(root, 0o755)
	k := fakeKernel(t, dir, map[string]string{"net.ipv4.ip_forward": "1", "net.core.somaxconn": "4096"}, "overlay", "br_netfilter")
	doc := load(t, testSpec)
	if r := execute(t, ModeApply, doc, root, k); !r.OK {
		t.Fatal(r.Error)
	}
	writeFile(t, filepath.Join(root, "etc/crictl.yaml"), "edited by hand\n")
	os.Chmod(filepath.Join(root, "etc/secret"), 0o644)
	k.WriteSysctl("net.ipv4.ip_forward", "0")

	check := execute(t, ModeCheck, doc, root, k)
	if !check.Drift || check.Changed != 3 {
		t.Fatalf("check: drift=%v changed=%d, want drift on 3 resources: %+v", check.Drift, check.Changed, statuses(check))
	}
	got := statuses(check)
	for _, res := range []string{"file /etc/crictl.yaml", "file /etc/secret", "sysctl net.ipv4.ip_forward"} {
		if got[res] != StatusDrift {
			t.Errorf("check: %s = %q, want drift", res, got[res])
		}
	}
	var crictl ActionReport
	for _, a := range check.Stages[1].Actions {
		if a.Resource == "file /etc/crictl.yaml" {
			crictl = a
		}
	}
	if !strings.Contains(crictl.Diff, "-edited by hand\n+runtime-endpoint:") {
		t.Errorf("drift diff does not show the change:\n%s", crictl.Diff)
	}

	repair := execute(t, ModeApply, doc, root, k)
	if !repair.OK || repair.Changed != 3 {
		t.Fatalf("repair: ok=%v changed=%d", repair.OK, repair.Changed)
	}
	if r := execute(t, ModeCheck, doc, root, k); r.Drift {
		t.Errorf("still drifting after repair: %+v", statuses(r))
	}
}

func TestPlanChangesNothing(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.Mkdir(root, 0o755)
	k := fakeKernel(t, dir, map[string]string{"net.ipv4.ip_forward": "0", "net.core.somaxconn": "128"}, "overlay", "br_netfilter")
	r := execute(t, ModePlan, load(t, testSpec), root, k)
	if !r.OK || r.Changed == 0 {
		t.Fatalf("plan: ok=%v changed=%d", r.OK, r.Changed)
	}
	var found []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if rel, _ := filepath.Rel(root, p); rel != "." && rel != "run" && rel != "run/nodeprov.lock" {
			found = append(found, rel)
		}
		return nil
	})
	if len(found) > 0 {
		t.Errorf("plan wrote into the root: %v", found)
	}
	if v, _, _ := k.ReadSysctl("net.ipv4.ip_forward"); v != "0" {
		t.Errorf("plan changed a sysctl: %q", v)
	}
}

func TestSecretDiffsAreHidden(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.Mkdir(root, 0o755)
	r := execute(t, ModePlan, load(t, testSpec), root, fakeKernel(t, dir, nil))
	for _, s := range r.Stages {
		for _, a := range s.Actions {
			if strings.Contains(a.Diff, "token-1") {
				t.Errorf("%s: diff leaks a mode 0600 file's contents", a.Resource)
			}
			if a.Resource == "file /etc/crictl.yaml" && a.Diff == "" {
				t.Errorf("world-readable file has no diff")
			}
		}
	}
}

// TestOfflineDefersLiveSteps: an image root gets the files, and module
// loads and sysctl writes are reported as deferred, never performed.
func TestOfflineDefersLiveSteps(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.Mkdir(root, 0o755)
	k := fakeKernel(t, dir, map[string]string{"net.ipv4.ip_forward": "0"})
	live := false
	r := Execute(context.Background(), Options{Mode: ModeApply, Doc: load(t, testSpec), RootDir: root, Live: &live, Kernel: k, Stages: testStages})
	if !r.OK {
		t.Fatal(r.Error)
	}
	got := statuses(r)
	for _, res := range []string{"module overlay", "module br_netfilter", "sysctl net.ipv4.ip_forward"} {
		if got[res] != StatusDeferred {
			t.Errorf("%s = %q, want deferred", res, got[res])
		}
	}
	if v, _, _ := k.ReadSysctl("net.ipv4.ip_forward"); v != "0" {
		t.Errorf("offline apply wrote a live sysctl")
	}
	if _, err := os.Stat(filepath.Join(root, "etc/sysctl.d/99-nodeprov.conf")); err != nil {
		t.Errorf("offline apply did not persist sysctls: %v", err)
	}
}

// refusingKernel wraps a kernel and refuses or clamps chosen keys, the way
// the real kernel answers EINVAL or silently limits a value.
type refusingKernel struct {
	*host.Kernel
	refuse map[string]bool
	clamp  map[string]string
}

func (k refusingKernel) WriteSysctl(key, value string) error {
	if k.refuse[key] {
		return fmt.Errorf("sysctl %s: kernel refused value %q: invalid argument", key, value)
	}
	if v, ok := k.clamp[key]; ok {
		value = v
	}
	return k.Kernel.WriteSysctl(key, value)
}

func TestKernelErrorsNameTheKeyAndPersistNothing(t *testing.T) {
	tests := []struct {
		name    string
		sysctl  string
		kernel  func(*host.Kernel) plan.Kernel
		wantErr string
	}{
		{"missing key", "net.ipv4.no_such_key: \"1\"", func(k *host.Kernel) plan.Kernel { return k },
			"sysctl net.ipv4.no_such_key: no such key"},
		{"refused value", "net.core.somaxconn: abc", func(k *host.Kernel) plan.Kernel {
			return refusingKernel{Kernel: k, refuse: map[string]bool{"net.core.somaxconn": true}}
		}, "kernel refused value \"abc\""},
		{"clamped value", "net.core.somaxconn: 99999999", func(k *host.Kernel) plan.Kernel {
			return refusingKernel{Kernel: k, clamp: map[string]string{"net.core.somaxconn": "65535"}}
		}, "kernel kept \"65535\" after writing \"99999999\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			root := filepath.Join(dir, "root")
			os.Mkdir(root, 0o755)
			k := fakeKernel(t, dir, map[string]string{"net.core.somaxconn": "128"})
			doc := load(t, "apiVersion: nodeprov/v1alpha1\nkind: Node\nkernel:\n  sysctl:\n    "+tt.sysctl+"\n")
			r := execute(t, ModeApply, doc, root, tt.kernel(k))
			if r.OK || r.Error == nil {
				t.Fatal("apply succeeded")
			}
			if r.Error.Stage != "kernel" || !strings.HasPrefix(r.Error.Resource, "sysctl ") || !strings.Contains(r.Error.Message, tt.wantErr) {
				t.Errorf("error = %+v, want kernel/sysctl … %q", r.Error, tt.wantErr)
			}
			if _, err := os.Stat(filepath.Join(root, kernel.SysctlConfPath)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a refused value reached the boot-time file (stat: %v)", err)
			}
		})
	}
}

func TestModuleStates(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.Mkdir(root, 0o755)
	k := fakeKernel(t, dir, nil, "overlay")
	writeFile(t, filepath.Join(k.ModulesDir, k.Release, "modules.builtin"), "kernel/net/bridge/br_netfilter.ko\n")
	doc := load(t, "apiVersion: nodeprov/v1alpha1\nkind: Node\nkernel:\n  modules: [overlay, br-netfilter, vxlan]\n")
	planned := execute(t, ModePlan, doc, root, k)
	got := map[string]string{}
	for _, a := range planned.Stages[0].Actions {
		got[a.Resource] = string(a.Op) + " " + a.Detail
	}
	want := map[string]string{
		"module overlay":      "none loaded",
		"module br-netfilter": "none builtin",
		"module vxlan":        "create load with modprobe",
	}
	for res, w := range want {
		if got[res] != w {
			t.Errorf("%s: %q, want %q", res, got[res], w)
		}
	}
	// modprobe is /bin/false here: the failure is reported for the module.
	r := execute(t, ModeApply, doc, root, k)
	if r.OK || r.Error.Resource != "module vxlan" {
		t.Errorf("apply with a failing modprobe: %+v", r.Error)
	}

	// Without module support every module is builtin.
	os.Remove(filepath.Join(k.ProcDir, "modules"))
	r = execute(t, ModePlan, doc, root, k)
	for _, a := range r.Stages[0].Actions[:3] {
		if a.Op != plan.OpNone || !strings.Contains(a.Detail, "builtin") {
			t.Errorf("no module support: %s = %s %q, want none/builtin", a.Resource, a.Op, a.Detail)
		}
	}
}

func TestSymlinkOutOfRootFailsTheWrite(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	outside := filepath.Join(dir, "elsewhere")
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.Mkdir(outside, 0o755)
	if err := os.Symlink(outside, filepath.Join(root, "etc/sysctl.d")); err != nil {
		t.Fatal(err)
	}
	doc := load(t, "apiVersion: nodeprov/v1alpha1\nkind: Node\nkernel:\n  sysctl:\n    net.ipv4.ip_forward: 1\n")
	live := false
	r := Execute(context.Background(), Options{Mode: ModeApply, Doc: doc, RootDir: root, Live: &live, Kernel: fakeKernel(t, dir, nil), Stages: testStages})
	if r.OK {
		t.Fatal("apply through an escaping symlink succeeded")
	}
	if !strings.Contains(r.Error.Message, "/etc/sysctl.d is a symlink to "+outside) || !strings.Contains(r.Error.Message, "does not exist inside root") {
		t.Errorf("unclear error: %s", r.Error.Message)
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 0 {
		t.Errorf("wrote outside the root: %v", entries)
	}
}

func TestLockWaitsThenTimesOut(t *testing.T) {
	dir := t.TempDir()
	root, err := host.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	held, err := host.AcquireRunLock(context.Background(), root, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var waited string
	_, err = host.AcquireRunLock(context.Background(), root, 150*time.Millisecond, func(h string) { waited = h })
	var le *host.LockError
	if !errors.As(err, &le) {
		t.Fatalf("second lock: %v, want a LockError", err)
	}
	if want := fmt.Sprintf("pid %d", os.Getpid()); waited != want || le.Holder != want {
		t.Errorf("holder: wait callback %q, error %q; want %q", waited, le.Holder, want)
	}
	done := make(chan error, 1)
	go func() {
		l, err := host.AcquireRunLock(context.Background(), root, 10*time.Second, nil)
		if err == nil {
			l.Release()
		}
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	held.Release()
	if err := <-done; err != nil {
		t.Errorf("waiting run did not get the lock after release: %v", err)
	}
}

// recorder is a test stage that reports what it sees of earlier changes.
type recorder struct{ seen *[]string }

func (recorder) Name() string { return "recorder" }
func (r recorder) Plan(ctx context.Context, env *plan.Env) ([]*plan.Action, error) {
	*r.seen = env.Changes.Paths()
	return nil, nil
}

func TestLaterStagesSeeEarlierChanges(t *testing.T) {
	dir := t.TempDir()
	root, _ := host.OpenRoot(dir)
	defer root.Close()
	doc := load(t, testSpec)
	steps := []struct {
		mode Mode
		want []string
	}{
		{ModePlan, []string{"/etc/alt", "/etc/crictl.yaml", "/etc/secret", "/var/lib/data"}},
		{ModeApply, []string{"/etc/alt", "/etc/crictl.yaml", "/etc/secret", "/var/lib/data"}},
		{ModeApply, []string{}},
		{ModePlan, []string{}},
	}
	for i, step := range steps {
		var seen []string
		env := &plan.Env{Spec: doc.Spec, Root: root, Changes: plan.NewChangeSet()}
		if _, _, err := run(context.Background(), env, []plan.Stage{files.Stage{}, recorder{&seen}}, step.mode, nil); err != nil {
			t.Fatal(err)
		}
		if strings.Join(seen, ",") != strings.Join(step.want, ",") {
			t.Errorf("step %d (%s): later stage saw %v, want %v", i, step.mode, seen, step.want)
		}
	}
}

func TestSelectStages(t *testing.T) {
	got, err := Select(All(Options{}), []string{"files", "kernel"})
	if err != nil || len(got) != 2 || got[0].Name() != "kernel" || got[1].Name() != "files" {
		t.Errorf("Select keeps the fixed order: %v %v", got, err)
	}
	if _, err := Select(All(Options{}), []string{"kernal"}); err == nil || !strings.Contains(err.Error(), `unknown stage "kernal"`) {
		t.Errorf("unknown stage: %v", err)
	}
}

// BenchmarkNoopReapply measures a re-apply that changes nothing, for a spec
// with 20 sysctls, 5 modules and 20 files.
func BenchmarkNoopReapply(b *testing.B) {
	dir := b.TempDir()
	root := filepath.Join(dir, "root")
	os.Mkdir(root, 0o755)
	var src strings.Builder
	src.WriteString("apiVersion: nodeprov/v1alpha1\nkind: Node\nkernel:\n  modules: [m0, m1, m2, m3, m4]\n  sysctl:\n")
	sysctls := map[string]string{}
	for i := 0; i < 20; i++ {
		key := fmt.Sprintf("net.test.key%02d", i)
		fmt.Fprintf(&src, "    %s: \"%d\"\n", key, i)
		sysctls[key] = "0"
	}
	src.WriteString("files:\n")
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&src, "  - path: /etc/bench/file%02d.conf\n    contents: %q\n", i, strings.Repeat("line\n", 50))
	}
	k := fakeKernel(b, dir, sysctls, "m0", "m1", "m2", "m3", "m4")
	doc := load(b, src.String())
	if r := execute(b, ModeApply, doc, root, k); !r.OK {
		b.Fatal(r.Error)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := execute(b, ModeApply, doc, root, k)
		if !r.OK || r.Changed != 0 {
			b.Fatalf("re-apply changed %d: %+v", r.Changed, r.Error)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/apply")
}

// parallelStage returns n parallel actions that track how many run at once;
// the action named fail fails.
type parallelStage struct {
	n        int
	fail     int
	inFlight *atomic.Int32
	maxSeen  *atomic.Int32
	ran      *atomic.Int32
}

func (parallelStage) Name() string { return "parallel" }
func (p parallelStage) Plan(ctx context.Context, env *plan.Env) ([]*plan.Action, error) {
	var out []*plan.Action
	for i := 0; i < p.n; i++ {
		out = append(out, &plan.Action{Resource: fmt.Sprintf("item %d", i), Op: plan.OpCreate, Parallel: true,
			Paths: []string{fmt.Sprintf("/item/%d", i)},
			Run: func(context.Context) error {
				cur := p.inFlight.Add(1)
				for {
					old := p.maxSeen.Load()
					if cur <= old || p.maxSeen.CompareAndSwap(old, cur) {
						break
					}
				}
				time.Sleep(20 * time.Millisecond)
				p.inFlight.Add(-1)
				p.ran.Add(1)
				if i == p.fail {
					return errors.New("boom")
				}
				return nil
			}})
	}
	return out, nil
}

func TestParallelActionsRunConcurrentlyAndReportInOrder(t *testing.T) {
	p := parallelStage{n: 8, fail: 5, inFlight: new(atomic.Int32), maxSeen: new(atomic.Int32), ran: new(atomic.Int32)}
	env := &plan.Env{Changes: plan.NewChangeSet(), Parallel: 3}
	reports, _, err := run(context.Background(), env, []plan.Stage{p}, ModeApply, nil)
	var se *StageError
	if !errors.As(err, &se) || se.Resource != "item 5" {
		t.Fatalf("want the failure of item 5, got %v", err)
	}
	if m := p.maxSeen.Load(); m < 2 || m > 3 {
		t.Errorf("max in flight = %d, want 2..3 (Parallel 3)", m)
	}
	if p.ran.Load() != 8 {
		t.Errorf("a failure cancelled independent actions: %d of 8 ran", p.ran.Load())
	}
	for i, a := range reports[0].Actions {
		if a.Resource != fmt.Sprintf("item %d", i) {
			t.Errorf("report %d is %s: not in plan order", i, a.Resource)
		}
	}
	if got := len(env.Changes.Paths()); got != 7 {
		t.Errorf("change set has %d paths, want the 7 that succeeded", got)
	}
}
