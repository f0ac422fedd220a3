package machineid

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// bakedImage is an image root that was booted once (or built carelessly):
// a real id, a D-Bus copy of it, nodeprov's run state and a download cache.
func bakedImage() tree {
	return tree{files: map[string]string{
		IDPath:                      idA + "\n",
		DbusPath:                    idA + "\n",
		lastRunPath:                 `{"ok":true}`,
		lockPath:                    "",
		cachePath + "/sha256/abcd":  "blob",
		"/etc/hostname":             "builder\n",
		"/var/lib/nodeprov/keep.me": "x",
	}}
}

func TestSeal(t *testing.T) {
	tests := []struct {
		name       string
		tree       tree
		opts       SealOptions
		wantID     string
		wantSealed []string // ids whose hashes are recorded, besides those already there
		keepCache  bool
	}{
		{name: "baked image", tree: bakedImage(), wantID: "uninitialized\n", wantSealed: []string{idA}, keepCache: true},
		{name: "empty", tree: bakedImage(), opts: SealOptions{Empty: true}, wantID: "", wantSealed: []string{idA}, keepCache: true},
		{name: "clean cache", tree: bakedImage(), opts: SealOptions{CleanCache: true}, wantID: "uninitialized\n", wantSealed: []string{idA}},
		{name: "stale dbus copy recorded too", tree: tree{files: map[string]string{IDPath: idA + "\n", DbusPath: idB + "\n"}},
			wantID: "uninitialized\n", wantSealed: []string{idA, idB}},
		{name: "no id to record", tree: tree{files: map[string]string{IDPath: "uninitialized\n"}}, wantID: "uninitialized\n"},
		{name: "invalid id is not recorded", tree: tree{files: map[string]string{IDPath: strings.Repeat("0", 32) + "\n"}}, wantID: "uninitialized\n"},
		{name: "missing", wantID: "uninitialized\n"},
		{name: "symlinked id", tree: tree{files: map[string]string{"/var/lib/id": idB + "\n"}, links: map[string]string{IDPath: "/var/lib/id"}},
			wantID: "uninitialized\n", wantSealed: []string{idB}},
		{name: "appends", tree: tree{files: map[string]string{IDPath: idA + "\n", SealedPath: SealedHash(idB) + "\n"}},
			wantID: "uninitialized\n", wantSealed: []string{idA, idB}},
		{name: "sorts and deduplicates", tree: tree{files: map[string]string{
			IDPath:     idA + "\n",
			SealedPath: SealedHash(idB) + "\n" + SealedHash(idA) + "\n" + SealedHash(idB) + "\n",
		}}, wantID: "uninitialized\n", wantSealed: []string{idA, idB}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, dir := makeRoot(t, tt.tree)
			res, err := Seal(context.Background(), root, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Changed || res.Summary() == "already sealed: nothing changed" {
				t.Errorf("first seal: changed=%v, %q", res.Changed, res.Summary())
			}
			if got := readHost(t, dir, IDPath); got != tt.wantID {
				t.Errorf("/etc/machine-id = %q, want %q", got, tt.wantID)
			}
			if fi, err := os.Lstat(filepath.Join(dir, IDPath)); err != nil || fi.Mode().Perm() != 0o444 || !fi.Mode().IsRegular() {
				t.Errorf("/etc/machine-id mode %v, %v; want a regular file, 0444", fi.Mode(), err)
			}
			if target, err := os.Readlink(filepath.Join(dir, DbusPath)); err != nil || target != IDPath {
				t.Errorf("dbus copy: %q, %v; want a symlink to %s", target, err, IDPath)
			}
			for _, p := range []string{lastRunPath, lockPath} {
				if _, err := os.Lstat(filepath.Join(dir, p)); !os.IsNotExist(err) {
					t.Errorf("%s not cleared: %v", p, err)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, cachePath, "sha256/abcd")); tt.keepCache != (err == nil) {
				t.Errorf("cache kept = %v, want %v", err == nil, tt.keepCache)
			}
			if _, ok := tt.tree.files["/var/lib/nodeprov/keep.me"]; ok {
				if _, err := os.Stat(filepath.Join(dir, "/var/lib/nodeprov/keep.me")); err != nil {
					t.Errorf("seal removed unrelated state: %v", err)
				}
			}
			checkSealed(t, dir, tt.wantSealed)

			// The offline check now passes, and sealing again changes
			// nothing and says so.
			after := snapshot(t, dir)
			if st := mustInspect(t, root, false); len(st.Problems) != 0 {
				t.Errorf("sealed image fails: %v", st.Problems)
			}
			res, err = Seal(context.Background(), root, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if res.Changed || res.Summary() != "already sealed: nothing changed" {
				t.Errorf("second seal changed something: %+v", res.Steps)
			}
			for _, s := range res.Steps {
				if s.Changed || s.Op.Changes() {
					t.Errorf("second seal: %+v", s)
				}
			}
			if snapshot(t, dir) != after {
				t.Error("second seal changed the root")
			}
		})
	}
}

// checkSealed fails unless SealedPath lists exactly the hashes of ids,
// sorted, one per line.
func checkSealed(t *testing.T, dir string, ids []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, SealedPath))
	if len(ids) == 0 {
		if !os.IsNotExist(err) {
			t.Errorf("sealed ids written with nothing to record: %q, %v", data, err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, id := range ids {
		want = append(want, SealedHash(id))
	}
	sortStrings(want)
	if got := string(data); got != strings.Join(want, "\n")+"\n" {
		t.Errorf("sealed ids:\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestSealSteps(t *testing.T) {
	root, _ := makeRoot(t, bakedImage())
	res, err := Seal(context.Background(), root, SealOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		resource string
		op       plan.Op
		detail   string
	}{
		{"sealed ids " + SealedPath, plan.OpCreate, "record sha256 of " + Abbrev(idA)},
		{"machine-id " + DbusPath, plan.OpUpdate, "copy " + Abbrev(idA) + " -> symlink to " + IDPath},
		{"machine-id " + IDPath, plan.OpUpdate, Abbrev(idA) + " -> uninitialized"},
		{"download cache " + cachePath, plan.OpNone, "kept (--clean-cache removes it)"},
		{"run state " + lastRunPath, plan.OpDelete, "cleared"},
		{"run lock " + lockPath, plan.OpDelete, "cleared"},
	}
	if len(res.Steps) != len(want) {
		t.Fatalf("steps = %+v, want %d", res.Steps, len(want))
	}
	for i, w := range want {
		s := res.Steps[i]
		if s.Resource != w.resource || s.Op != w.op || s.Detail != w.detail || s.Changed != w.op.Changes() {
			t.Errorf("step %d = %+v, want %+v", i, s, w)
		}
	}
	if res.Root != root.Dir() || res.Summary() != "sealed: 5 changes" {
		t.Errorf("root %q, summary %q", res.Root, res.Summary())
	}
}

func TestPlanSealIsDryRun(t *testing.T) {
	root, dir := makeRoot(t, bakedImage())
	before := snapshot(t, dir)
	actions, err := PlanSeal(root, SealOptions{CleanCache: true})
	if err != nil {
		t.Fatal(err)
	}
	changes := 0
	for _, a := range actions {
		if a.Op.Changes() {
			changes++
		}
	}
	if changes != 6 {
		t.Errorf("%d changes planned, want 6: %+v", changes, actions)
	}
	if snapshot(t, dir) != before {
		t.Fatal("PlanSeal changed the root")
	}
}

func TestSealRefusesWhileARunHoldsTheLock(t *testing.T) {
	root, dir := makeRoot(t, bakedImage())
	f, err := root.OpenLock(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	if _, err := Seal(context.Background(), root, SealOptions{}); err == nil || !strings.Contains(err.Error(), "lock "+lockPath+": a nodeprov run holds it") {
		t.Fatalf("err = %v, want the lock to be held", err)
	}
	if snapshot(t, dir) != before {
		t.Fatal("seal changed the root while a run held the lock")
	}
}

func TestSealWithoutRunDirCreatesNoRunDir(t *testing.T) {
	root, dir := makeRoot(t, tree{files: map[string]string{IDPath: idA + "\n"}})
	if _, err := Seal(context.Background(), root, SealOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "run")); !os.IsNotExist(err) {
		t.Fatalf("seal created /run: %v", err)
	}
}

// boot does what systemd does on the first boot of a sealed image: it
// writes a fresh random id; the D-Bus symlink stays.
func boot(t *testing.T, dir string) string {
	t.Helper()
	id := NewID()
	p := filepath.Join(dir, IDPath)
	os.Remove(p)
	if err := os.WriteFile(p, []byte(id+"\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	return id
}

// copyRoot copies the sealed image dir, symlinks included, into a fresh
// root, as a cloud provider clones a golden image.
func copyRoot(t *testing.T, dir string) (*host.Root, string) {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, out)
		case d.IsDir():
			return os.MkdirAll(out, info.Mode().Perm())
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(out, data, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	root, err := host.OpenRoot(dst)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return root, dst
}

func TestSealThenBoot(t *testing.T) {
	image, imageDir := makeRoot(t, tree{files: map[string]string{IDPath: idA + "\n", DbusPath: idA + "\n"}})
	if _, err := Seal(context.Background(), image, SealOptions{}); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, name := range []string{"host-1", "host-2"} {
		t.Run(name, func(t *testing.T) {
			root, dir := copyRoot(t, imageDir)
			id := boot(t, dir)
			ids[id] = true
			env := newEnv(root, true, PolicyFail, idB)
			actions, err := Stage{}.Plan(context.Background(), env)
			if err != nil {
				t.Fatalf("booted copy of a sealed image fails: %v", err)
			}
			if len(actions) != 1 || actions[0].Op != plan.OpNone || actions[0].Detail != Abbrev(id)+" valid, unique" {
				t.Fatalf("actions = %+v", actions)
			}
			assertDbusOK(t, dir)
		})
	}
	if len(ids) != 2 {
		t.Fatalf("the two boots got ids %v, want two different ones", ids)
	}
}

func TestSealedCloneIsCaughtAndRepaired(t *testing.T) {
	image, imageDir := makeRoot(t, tree{files: map[string]string{IDPath: idA + "\n"}})
	if _, err := Seal(context.Background(), image, SealOptions{}); err != nil {
		t.Fatal(err)
	}
	// A clone that kept the image's id (restored from a pre-seal backup,
	// or a provider that injects the old id).
	if err := os.Remove(filepath.Join(imageDir, IDPath)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(imageDir, IDPath), []byte(idA+"\n"), 0o444); err != nil {
		t.Fatal(err)
	}

	_, err := Stage{}.Plan(context.Background(), newEnv(image, true, PolicyFail))
	var ce *CheckError
	if !errors.As(err, &ce) || len(ce.Checks()) != 1 || ce.Checks()[0] != CheckSealedClone {
		t.Fatalf("err = %v, want %s", err, CheckSealedClone)
	}
	if !strings.Contains(err.Error(), "run `nodeprov seal` on the image, or set machineID.policy: regenerate") {
		t.Errorf("error %q does not say how to fix it", err)
	}

	env := newEnv(image, true, PolicyRegenerate)
	actions, err := Stage{}.Plan(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if n := apply(t, env, actions); n != 1 {
		t.Fatalf("%d changes, want 1", n)
	}
	id, err := ParseID(readHost(t, imageDir, IDPath))
	if err != nil || id == idA {
		t.Fatalf("after regenerate: id %q, %v", id, err)
	}
	assertDbusOK(t, imageDir)
	if _, err := (Stage{}).Plan(context.Background(), newEnv(image, true, PolicyFail)); err != nil {
		t.Fatalf("repaired clone still fails: %v", err)
	}
}
