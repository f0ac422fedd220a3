package machineid

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nodeprov/nodeprov/stages/plan"
)

// liveCases are root fixtures of a booted host and the checks they fail.
var liveCases = []struct {
	name      string
	tree      tree
	forbidden []string
	want      []string // failed checks; none means the host passes
}{
	{name: "valid", tree: tree{files: map[string]string{IDPath: idA + "\n"}}},
	{name: "valid without newline", tree: tree{files: map[string]string{IDPath: idA}}},
	{name: "dbus absolute symlink", tree: tree{files: map[string]string{IDPath: idA + "\n"}, links: map[string]string{DbusPath: IDPath}}},
	{name: "dbus relative symlink", tree: tree{files: map[string]string{IDPath: idA + "\n"}, links: map[string]string{DbusPath: "../../../etc/machine-id"}}},
	{name: "dbus equal copy", tree: tree{files: map[string]string{IDPath: idA + "\n", DbusPath: idA + "\n"}}},
	{name: "dbus equal copy without newline", tree: tree{files: map[string]string{IDPath: idA + "\n", DbusPath: idA}}},
	{name: "dbus symlink elsewhere, same id", tree: tree{
		files: map[string]string{IDPath: idA + "\n", "/run/dbus-id": idA + "\n"},
		links: map[string]string{DbusPath: "/run/dbus-id"},
	}},
	{name: "etc symlink to a valid id", tree: tree{
		files: map[string]string{"/var/lib/machine-id": idA + "\n"},
		links: map[string]string{IDPath: "../var/lib/machine-id"},
	}},
	{name: "other ids forbidden", tree: tree{files: map[string]string{IDPath: idA + "\n"}}, forbidden: []string{idB}},
	{name: "other id sealed", tree: tree{files: map[string]string{IDPath: idA + "\n", SealedPath: SealedHash(idB) + "\n"}}},

	{name: "missing", want: []string{CheckMissing}},
	{name: "dangling symlink", tree: tree{links: map[string]string{IDPath: "/run/machine-id"}}, want: []string{CheckMissing}},
	{name: "empty", tree: tree{files: map[string]string{IDPath: ""}}, want: []string{CheckMissing}},
	{name: "uninitialized", tree: tree{files: map[string]string{IDPath: "uninitialized\n"}}, want: []string{CheckUninitialized}},
	{name: "uninitialized, dbus linked", tree: tree{files: map[string]string{IDPath: "uninitialized\n"}, links: map[string]string{DbusPath: IDPath}}, want: []string{CheckUninitialized}},
	{name: "uppercase", tree: tree{files: map[string]string{IDPath: strings.ToUpper(idA) + "\n"}}, want: []string{CheckInvalid}},
	{name: "31 chars", tree: tree{files: map[string]string{IDPath: idA[:31] + "\n"}}, want: []string{CheckInvalid}},
	{name: "all zeros", tree: tree{files: map[string]string{IDPath: strings.Repeat("0", 32) + "\n"}}, want: []string{CheckInvalid}},
	{name: "lone newline", tree: tree{files: map[string]string{IDPath: "\n"}}, want: []string{CheckInvalid}},
	{name: "huge", tree: tree{files: map[string]string{IDPath: strings.Repeat(idA, 1000)}}, want: []string{CheckInvalid}},
	{name: "dbus stale copy", tree: tree{files: map[string]string{IDPath: idA + "\n", DbusPath: idB + "\n"}}, want: []string{CheckDbusMismatch}},
	{name: "dbus garbage", tree: tree{files: map[string]string{IDPath: idA + "\n", DbusPath: "x\n"}}, want: []string{CheckDbusMismatch}},
	{name: "dbus dangling symlink", tree: tree{files: map[string]string{IDPath: idA + "\n"}, links: map[string]string{DbusPath: "/nowhere"}}, want: []string{CheckDbusMismatch}},
	{name: "dbus symlink elsewhere, other id", tree: tree{
		files: map[string]string{IDPath: idA + "\n", "/run/dbus-id": idB + "\n"},
		links: map[string]string{DbusPath: "/run/dbus-id"},
	}, want: []string{CheckDbusMismatch}},
	{name: "missing with a dbus copy", tree: tree{files: map[string]string{DbusPath: idB + "\n"}}, want: []string{CheckMissing, CheckDbusMismatch}},
	{name: "sealed clone", tree: tree{files: map[string]string{
		IDPath: idA + "\n", SealedPath: SealedHash(idB) + "\n" + SealedHash(idA) + "\n",
	}, links: map[string]string{DbusPath: IDPath}}, want: []string{CheckSealedClone}},
	{name: "forbidden", tree: tree{files: map[string]string{IDPath: idA + "\n"}}, forbidden: []string{idB, idA}, want: []string{CheckForbidden}},
	{name: "forbidden and stale dbus", tree: tree{files: map[string]string{IDPath: idA + "\n", DbusPath: idB + "\n"}}, forbidden: []string{idA},
		want: []string{CheckDbusMismatch, CheckForbidden}},
	{name: "sealed clone and forbidden", tree: tree{files: map[string]string{IDPath: idA + "\n", SealedPath: SealedHash(idA) + "\n"}}, forbidden: []string{idA},
		want: []string{CheckSealedClone, CheckForbidden}},
}

func TestLiveFail(t *testing.T) {
	for _, tc := range liveCases {
		t.Run(tc.name, func(t *testing.T) {
			root, dir := makeRoot(t, tc.tree)
			before := snapshot(t, dir)
			env := newEnv(root, true, PolicyFail, tc.forbidden...)
			actions, err := Stage{}.Plan(context.Background(), env)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if len(actions) != 1 || actions[0].Op != plan.OpNone || !strings.HasSuffix(actions[0].Detail, "valid, unique") {
					t.Fatalf("actions = %+v, want one unchanged \"valid, unique\"", actions)
				}
				if !strings.HasPrefix(actions[0].Detail, Abbrev(idA)) {
					t.Errorf("detail %q does not name the id", actions[0].Detail)
				}
				return
			}
			var ce *CheckError
			if !errors.As(err, &ce) {
				t.Fatalf("Plan: err = %v, want a *CheckError", err)
			}
			if !reflect.DeepEqual(ce.Checks(), tc.want) {
				t.Errorf("checks = %v, want %v", ce.Checks(), tc.want)
			}
			for _, name := range tc.want {
				if !strings.Contains(err.Error(), name) {
					t.Errorf("error %q does not name %s", err, name)
				}
			}
			if !strings.Contains(err.Error(), "machineID.policy: regenerate") {
				t.Errorf("error %q does not say how to fix it", err)
			}
			if after := snapshot(t, dir); after != before {
				t.Errorf("policy fail changed the root:\n%s\nwant\n%s", after, before)
			}
		})
	}
}

func TestLiveWarn(t *testing.T) {
	for _, tc := range liveCases {
		t.Run(tc.name, func(t *testing.T) {
			root, dir := makeRoot(t, tc.tree)
			before := snapshot(t, dir)
			env := newEnv(root, true, PolicyWarn, tc.forbidden...)
			actions, err := Stage{}.Plan(context.Background(), env)
			if err != nil {
				t.Fatal(err)
			}
			warnings := env.Warnings()
			if len(warnings) != len(tc.want) {
				t.Fatalf("warnings = %q, want %d", warnings, len(tc.want))
			}
			for i, name := range tc.want {
				if !strings.HasPrefix(warnings[i], name+": ") {
					t.Errorf("warning %q, want one for %s", warnings[i], name)
				}
			}
			for _, a := range actions {
				if a.Op != plan.OpNone {
					t.Errorf("%s: op %s, want none", a.Resource, a.Op)
				}
			}
			if len(tc.want) > 0 && len(actions) != len(tc.want) {
				t.Errorf("%d actions, want one per problem (%d)", len(actions), len(tc.want))
			}
			if after := snapshot(t, dir); after != before {
				t.Errorf("policy warn changed the root")
			}
		})
	}
}

func TestLiveRegenerate(t *testing.T) {
	for _, tc := range liveCases {
		t.Run(tc.name, func(t *testing.T) {
			root, dir := makeRoot(t, tc.tree)
			before := snapshot(t, dir)
			oldID, _ := os.ReadFile(filepath.Join(dir, IDPath))
			env := newEnv(root, true, PolicyRegenerate, tc.forbidden...)
			actions, err := Stage{}.Plan(context.Background(), env)
			if err != nil {
				t.Fatal(err)
			}
			if len(env.Warnings()) != 0 {
				t.Errorf("warnings %q under regenerate", env.Warnings())
			}
			if len(tc.want) == 0 {
				if n := apply(t, env, actions); n != 0 || snapshot(t, dir) != before {
					t.Fatalf("a passing host was changed (%d actions)", n)
				}
				return
			}
			if n := apply(t, env, actions); n != 1 {
				t.Fatalf("%d changing actions, want 1: %+v", n, actions)
			}
			a := actions[0]
			if a.Op != plan.OpUpdate {
				t.Errorf("op %s, want update", a.Op)
			}

			dbusOnly := len(tc.want) == 1 && tc.want[0] == CheckDbusMismatch
			newID := readHost(t, dir, IDPath)
			switch {
			case dbusOnly:
				if newID != string(oldID) {
					t.Errorf("id changed from %q to %q to fix only the dbus copy", oldID, newID)
				}
				if a.Resource != "machine-id "+DbusPath {
					t.Errorf("resource %q, want the dbus copy", a.Resource)
				}
			default:
				id, err := ParseID(newID)
				if err != nil || !strings.HasSuffix(newID, "\n") {
					t.Fatalf("new id %q: %v", newID, err)
				}
				if newID == string(oldID) || id == idA || id == idB {
					t.Errorf("id not regenerated: %q", newID)
				}
				if a.Resource != "machine-id "+IDPath {
					t.Errorf("resource %q, want %q", a.Resource, "machine-id "+IDPath)
				}
				if want := " -> " + Abbrev(id) + " ("; !strings.Contains(a.Detail, want) {
					t.Errorf("detail %q does not show the new id (%q)", a.Detail, want)
				}
				for _, name := range tc.want {
					if name != CheckDbusMismatch && !strings.Contains(a.Detail, name) {
						t.Errorf("detail %q does not name %s", a.Detail, name)
					}
				}
				fi, err := os.Lstat(filepath.Join(dir, IDPath))
				if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o444 {
					t.Errorf("/etc/machine-id: %v, %v; want a regular file, mode 0444", fi.Mode(), err)
				}
				if !env.Changes.Path(IDPath) {
					t.Error("change set misses /etc/machine-id")
				}
			}
			assertDbusOK(t, dir)
			if st := mustInspect(t, root, true, tc.forbidden...); len(st.Problems) != 0 {
				t.Fatalf("after regenerate: %v", st.Problems)
			}

			// Converged: the next run has nothing to do.
			env2 := newEnv(root, true, PolicyRegenerate, tc.forbidden...)
			again, err := Stage{}.Plan(context.Background(), env2)
			if err != nil {
				t.Fatal(err)
			}
			if len(again) != 1 || again[0].Op != plan.OpNone || !strings.Contains(again[0].Detail, "valid, unique") {
				t.Fatalf("second run: %+v, want one unchanged action", again)
			}
		})
	}
}

// offlineCases are image roots and the checks they fail.
var offlineCases = []struct {
	name string
	tree tree
	want []string
}{
	{name: "missing"},
	{name: "empty", tree: tree{files: map[string]string{IDPath: ""}}},
	{name: "uninitialized", tree: tree{files: map[string]string{IDPath: "uninitialized\n"}}},
	{name: "uninitialized without newline", tree: tree{files: map[string]string{IDPath: "uninitialized"}}},
	{name: "uninitialized, dbus linked", tree: tree{files: map[string]string{IDPath: "uninitialized\n"}, links: map[string]string{DbusPath: IDPath}}},
	{name: "empty, dbus linked relative", tree: tree{files: map[string]string{IDPath: ""}, links: map[string]string{DbusPath: "../../../etc/machine-id"}}},

	{name: "baked", tree: tree{files: map[string]string{IDPath: idA + "\n"}}, want: []string{CheckBaked}},
	{name: "baked, dbus linked", tree: tree{files: map[string]string{IDPath: idA + "\n"}, links: map[string]string{DbusPath: IDPath}}, want: []string{CheckBaked}},
	{name: "baked with a dbus copy", tree: tree{files: map[string]string{IDPath: idA + "\n", DbusPath: idA + "\n"}}, want: []string{CheckBaked, CheckDbusCopy}},
	{name: "uninitialized with a dbus copy", tree: tree{files: map[string]string{IDPath: "uninitialized\n", DbusPath: idB + "\n"}}, want: []string{CheckDbusCopy}},
	{name: "empty with a dbus copy", tree: tree{files: map[string]string{IDPath: "", DbusPath: idB + "\n"}}, want: []string{CheckDbusCopy}},
	{name: "dbus symlink elsewhere", tree: tree{files: map[string]string{"/run/id": idB}, links: map[string]string{DbusPath: "/run/id"}}, want: []string{CheckDbusCopy}},
	{name: "garbage", tree: tree{files: map[string]string{IDPath: "hello\n"}}, want: []string{CheckInvalid}},
	{name: "all zeros", tree: tree{files: map[string]string{IDPath: strings.Repeat("0", 32) + "\n"}}, want: []string{CheckInvalid}},
}

func TestOffline(t *testing.T) {
	for _, tc := range offlineCases {
		for _, policy := range []string{PolicyFail, PolicyWarn, PolicyRegenerate} {
			t.Run(tc.name+"/"+policy, func(t *testing.T) {
				root, dir := makeRoot(t, tc.tree)
				before := snapshot(t, dir)
				env := newEnv(root, false, policy)
				actions, err := Stage{}.Plan(context.Background(), env)
				if len(tc.want) == 0 {
					if err != nil {
						t.Fatal(err)
					}
					if len(actions) != 1 || actions[0].Op != plan.OpDeferred || !strings.Contains(actions[0].Detail, "image sealed") {
						t.Fatalf("actions = %+v, want one deferred \"image sealed\"", actions)
					}
					if apply(t, env, actions); snapshot(t, dir) != before {
						t.Fatal("a sealed image was changed")
					}
					return
				}
				switch policy {
				case PolicyFail:
					// Offline, an unsealed image is expected mid-build (apply,
					// then seal): every problem is a warning naming its check
					// and the fix, nothing changes, and boot enforces.
					if err != nil {
						t.Fatal(err)
					}
					got := env.Warnings()
					if len(got) != len(tc.want) {
						t.Fatalf("warnings %q, want checks %v", got, tc.want)
					}
					for i, w := range got {
						if !strings.HasPrefix(w, tc.want[i]) || !strings.Contains(w, "nodeprov seal") {
							t.Errorf("warning %q, want check %s and the fix", w, tc.want[i])
						}
					}
					if apply(t, env, actions) != 0 || snapshot(t, dir) != before {
						t.Fatal("policy fail changed an image offline")
					}
					return
				case PolicyWarn:
					if err != nil {
						t.Fatal(err)
					}
					if got := env.Warnings(); len(got) != len(tc.want) || !strings.HasPrefix(got[0], tc.want[0]) {
						t.Fatalf("warnings %q, want %v", got, tc.want)
					}
					if apply(t, env, actions) != 0 || snapshot(t, dir) != before {
						t.Fatal("policy warn changed the image")
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if apply(t, env, actions) == 0 {
					t.Fatalf("regenerate planned no change: %+v", actions)
				}
				oldID, _ := ParseID(tc.tree.files[IDPath])
				if _, ok := tc.tree.files[IDPath]; !ok {
					if _, err := os.Lstat(filepath.Join(dir, IDPath)); !os.IsNotExist(err) {
						t.Errorf("a missing /etc/machine-id (sealed) was created: %v", err)
					}
				} else if oldID != "" || tc.tree.files[IDPath] == "hello\n" || strings.HasPrefix(tc.tree.files[IDPath], "0000") {
					if got := readHost(t, dir, IDPath); got != "uninitialized\n" {
						t.Errorf("/etc/machine-id = %q, want uninitialized", got)
					}
				} else if got := readHost(t, dir, IDPath); got != tc.tree.files[IDPath] {
					t.Errorf("/etc/machine-id = %q changed, though it was sealed", got)
				}
				if oldID != "" {
					sealed := readHost(t, dir, SealedPath)
					if !strings.Contains(sealed, SealedHash(oldID)) {
						t.Errorf("sealed ids %q miss the baked id's hash", sealed)
					}
				}
				assertDbusOK(t, dir)
				again, err := Stage{}.Plan(context.Background(), newEnv(root, false, PolicyFail))
				if err != nil {
					t.Fatalf("after regenerate: %v", err)
				}
				if len(again) != 1 || again[0].Op != plan.OpDeferred {
					t.Fatalf("after regenerate: %+v, want one deferred action", again)
				}
			})
		}
	}
}

func TestPolicies(t *testing.T) {
	root, _ := makeRoot(t, tree{})
	t.Run("default is fail", func(t *testing.T) {
		_, err := Stage{}.Plan(context.Background(), newEnv(root, true, ""))
		var ce *CheckError
		if !errors.As(err, &ce) {
			t.Fatalf("err = %v, want a *CheckError", err)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		_, err := Stage{}.Plan(context.Background(), newEnv(root, true, "ignore"))
		if err == nil || !strings.Contains(err.Error(), `machineID.policy "ignore"`) {
			t.Fatalf("err = %v, want unknown policy", err)
		}
	})
	t.Run("nil spec", func(t *testing.T) {
		env := newEnv(root, false, "")
		env.Spec = nil
		if _, err := (Stage{}).Plan(context.Background(), env); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPlanErrors(t *testing.T) {
	tests := []struct {
		name    string
		tree    tree
		dirs    []string
		live    bool
		errLike string
	}{
		{name: "bad sealed record", live: true, tree: tree{files: map[string]string{IDPath: idA + "\n", SealedPath: "nope\n"}}, errLike: SealedPath + " line 1"},
		{name: "machine-id is a directory", live: true, dirs: []string{IDPath}, errLike: "cannot regenerate /etc/machine-id: it is a directory"},
		{name: "dbus copy is a directory", live: true, tree: tree{files: map[string]string{IDPath: idA + "\n"}}, dirs: []string{DbusPath}, errLike: "cannot replace " + DbusPath},
		{name: "image machine-id is a directory", dirs: []string{IDPath}, errLike: "cannot seal /etc/machine-id: it is a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, dir := makeRoot(t, tt.tree)
			for _, d := range tt.dirs {
				if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Stage{}.Plan(context.Background(), newEnv(root, tt.live, PolicyRegenerate))
			if err == nil || !strings.Contains(err.Error(), tt.errLike) {
				t.Fatalf("err = %v, want one containing %q", err, tt.errLike)
			}
		})
	}
}

// TestPlanModeChangesNothing checks that planning a regenerate writes
// nothing: the runner only calls Run in apply mode.
func TestPlanModeChangesNothing(t *testing.T) {
	root, dir := makeRoot(t, tree{files: map[string]string{IDPath: idA + "\n", DbusPath: idA + "\n", SealedPath: SealedHash(idA) + "\n"}})
	before := snapshot(t, dir)
	env := newEnv(root, true, PolicyRegenerate)
	env.Mode = "plan"
	actions, err := Stage{}.Plan(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if len(actions) != 1 || !actions[0].Op.Changes() {
		t.Fatalf("actions = %+v, want one pending change", actions)
	}
	if !reflect.DeepEqual(actions[0].Paths, []string{IDPath, DbusPath}) {
		t.Errorf("paths = %v, want the id and the dbus copy", actions[0].Paths)
	}
	if snapshot(t, dir) != before {
		t.Fatal("Plan changed the root")
	}
}
