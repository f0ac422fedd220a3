package machineid

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"

	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// nodeprov's own state inside a root.
const (
	lastRunPath = host.LastRunPath
	lockPath    = host.RunLockPath
	cachePath   = host.CacheDir
)

// SealOptions are the options of `nodeprov seal`.
type SealOptions struct {
	// Empty leaves /etc/machine-id empty instead of "uninitialized": systemd
	// still generates an id at boot (and can keep it on a transient mount
	// when /etc is read-only), but the boot is not a first boot.
	Empty bool
	// CleanCache removes the download cache, /var/cache/nodeprov.
	CleanCache bool
}

// SealStep is one thing Seal did or found already done.
type SealStep struct {
	Resource string  `json:"resource"`
	Op       plan.Op `json:"op"`
	Changed  bool    `json:"changed"`
	Detail   string  `json:"detail,omitempty"`
}

// SealResult is what Seal did, for the CLI to print or encode as JSON.
type SealResult struct {
	Root    string     `json:"root"`
	Changed bool       `json:"changed"`
	Steps   []SealStep `json:"steps"`
}

// Summary is a one-line outcome: "sealed: 3 changes" or "already sealed:
// nothing changed".
func (r *SealResult) Summary() string {
	n := 0
	for _, s := range r.Steps {
		if s.Changed {
			n++
		}
	}
	switch n {
	case 0:
		return "already sealed: nothing changed"
	case 1:
		return "sealed: 1 change"
	}
	return fmt.Sprintf("sealed: %d changes", n)
}

// Seal prepares an image root so every host booted from it gets its own
// machine id: it records the sha256 of the current id (and of a D-Bus copy's
// id) in SealedPath, makes /var/lib/dbus/machine-id a symlink to
// /etc/machine-id, sets /etc/machine-id to "uninitialized" (empty with
// opts.Empty), clears nodeprov's run state (last-run.json and the run lock
// file, removed last) and, with opts.CleanCache, the download cache. Sealing
// a sealed root changes nothing. On failure the result holds the steps done
// so far.
//
// Seal takes the run lock itself, so the caller must not hold it: sealing
// while a run is in progress on the root is an error.
func Seal(ctx context.Context, root *host.Root, opts SealOptions) (*SealResult, error) {
	lockExisted, unlock, err := host.TryRunLock(root)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	defer unlock()
	actions, err := planSeal(root, opts, &lockExisted)
	if err != nil {
		return nil, err
	}
	res := &SealResult{Root: root.Dir(), Steps: []SealStep{}}
	for _, a := range actions {
		step := SealStep{Resource: a.Resource, Op: a.Op, Detail: a.Detail}
		if a.Op.Changes() {
			if err := a.Run(ctx); err != nil {
				return res, fmt.Errorf("seal: %s: %w", a.Resource, err)
			}
			step.Changed, res.Changed = true, true
		}
		res.Steps = append(res.Steps, step)
	}
	return res, nil
}

// PlanSeal returns the actions Seal runs, in order, without changing
// anything: a dry run.
func PlanSeal(root *host.Root, opts SealOptions) ([]*plan.Action, error) {
	return planSeal(root, opts, nil)
}

// planSeal plans sealing. lockExisted is nil in a dry run; in Seal, which
// holds the run lock and so has created the lock file if it was missing, it
// says whether the file was there before.
func planSeal(root *host.Root, opts SealOptions, lockExisted *bool) ([]*plan.Action, error) {
	st, err := Inspect(root, false, nil)
	if err != nil {
		return nil, err
	}
	want := Uninitialized + "\n"
	if opts.Empty {
		want = ""
	}
	rec, dbus, id, err := planSealID(root, st, want)
	if err != nil {
		return nil, err
	}
	actions := []*plan.Action{rec, dbus, id}
	cache, err := planCache(root, opts.CleanCache)
	if err != nil {
		return nil, err
	}
	actions = append(actions, cache)
	lastRun, err := planClear(root, "run state "+lastRunPath, lastRunPath)
	if err != nil {
		return nil, err
	}
	// The lock file goes last: Seal holds the run lock until the very end.
	lock, err := planClear(root, "run lock "+lockPath, lockPath)
	if err != nil {
		return nil, err
	}
	if lockExisted != nil && !*lockExisted {
		lock.Op, lock.Detail, lock.Run = plan.OpNone, "absent", nil
	}
	return append(actions, lastRun, lock), nil
}

// planSealID plans the identity part of sealing, in a crash-safe order: the
// ids are recorded before anything forgets them, the D-Bus copy becomes a
// symlink, and /etc/machine-id gets want.
func planSealID(root *host.Root, st *Status, want string) (rec, dbus, id *plan.Action, err error) {
	if rec, err = planRecord(root, st); err != nil {
		return nil, nil, nil, err
	}
	if err = checkDbusReplaceable(st.Dbus); err != nil {
		return nil, nil, nil, err
	}
	dbus = linkDbus(root, st)
	if id, err = planIDContents(root, st.ID, want); err != nil {
		return nil, nil, nil, err
	}
	return rec, dbus, id, nil
}

// planRecord adds the hashes of the ids found in /etc/machine-id and the
// D-Bus copy to SealedPath, keeping the hashes already there.
func planRecord(root *host.Root, st *Status) (*plan.Action, error) {
	data, exists, err := root.ReadFile(SealedPath)
	if err != nil {
		return nil, fmt.Errorf("read sealed ids: %w", err)
	}
	hashes, err := parseSealed(string(data))
	if err != nil {
		return nil, err
	}
	a := &plan.Action{Resource: "sealed ids " + SealedPath, Op: plan.OpNone, Paths: []string{SealedPath}}
	var added []string
	for _, f := range []File{st.ID, st.Dbus} {
		if f.Content == ContentValid && !hashes[SealedHash(f.ID)] {
			hashes[SealedHash(f.ID)] = true
			added = append(added, Abbrev(f.ID))
		}
	}
	sorted := make([]string, 0, len(hashes))
	for h := range hashes {
		sorted = append(sorted, h)
	}
	sort.Strings(sorted)
	var content []byte
	if len(sorted) > 0 {
		content = []byte(strings.Join(sorted, "\n") + "\n")
	}
	switch {
	case len(added) > 0:
		a.Detail = "record sha256 of " + strings.Join(added, ", ")
	case len(hashes) == 0 && !exists:
		a.Detail = "nothing to record"
		return a, nil
	case bytes.Equal(content, data):
		a.Detail = fmt.Sprintf("%d recorded, nothing to add", len(hashes))
		return a, nil
	default:
		a.Detail = fmt.Sprintf("%d recorded, sorted and deduplicated", len(hashes))
	}
	a.Op = plan.OpUpdate
	if !exists {
		a.Op = plan.OpCreate
	}
	a.Run = func(context.Context) error {
		return root.WriteFile(SealedPath, content, host.WriteOptions{Mode: 0o644, UID: -1, GID: -1})
	}
	return a, nil
}

// planIDContents makes /etc/machine-id a regular file holding exactly want,
// mode 0444.
func planIDContents(root *host.Root, f File, want string) (*plan.Action, error) {
	a := &plan.Action{Resource: "machine-id " + IDPath, Paths: []string{IDPath}}
	label := strings.TrimSuffix(want, "\n")
	if label == "" {
		label = "(empty)"
	}
	switch {
	case f.Exists && f.Type != 0 && f.Type != fs.ModeSymlink:
		return nil, fmt.Errorf("cannot seal %s: it is a %s; remove it", IDPath, plan.TypeName(f.Type))
	case f.Exists && f.Type == 0 && f.Raw == want && f.Mode == 0o444:
		a.Op, a.Detail = plan.OpNone, label
		return a, nil
	case f.Exists && f.Type == 0 && f.Raw == want:
		a.Op, a.Detail = plan.OpUpdate, fmt.Sprintf("%s, mode %s -> 0444", label, plan.Octal(f.Mode))
	case !f.Exists:
		a.Op, a.Detail = plan.OpCreate, label
	case f.Type == fs.ModeSymlink:
		a.Op, a.Detail = plan.OpUpdate, fmt.Sprintf("symlink to %s -> %s", f.Target, label)
	default:
		a.Op, a.Detail = plan.OpUpdate, fmt.Sprintf("%s -> %s", f.describe(), label)
	}
	a.Run = func(context.Context) error { return writeID(root, want) }
	return a, nil
}

// planClear removes a file of nodeprov's run state.
func planClear(root *host.Root, resource, p string) (*plan.Action, error) {
	st, err := root.Lstat(p)
	if err != nil {
		return nil, err
	}
	a := &plan.Action{Resource: resource, Op: plan.OpNone, Detail: "absent", Paths: []string{p}}
	if st.Exists {
		a.Op, a.Detail = plan.OpDelete, "cleared"
		a.Run = func(context.Context) error { return root.Remove(p) }
	}
	return a, nil
}

// planCache removes the download cache when asked to, and says it was kept
// otherwise.
func planCache(root *host.Root, clean bool) (*plan.Action, error) {
	st, err := root.Lstat(cachePath)
	if err != nil {
		return nil, err
	}
	a := &plan.Action{Resource: "download cache " + cachePath, Op: plan.OpNone, Paths: []string{cachePath}}
	switch {
	case !st.Exists:
		a.Detail = "absent"
	case !clean:
		a.Detail = "kept (--clean-cache removes it)"
	default:
		a.Op, a.Detail = plan.OpDelete, "removed"
		a.Run = func(context.Context) error { return removeTree(root, cachePath) }
	}
	return a, nil
}

// removeTree removes p and everything below it, confined to the root.
//
// host.Root has no RemoveAll yet; os.Root confines the walk the same way,
// except that it refuses (rather than resolves in the root) an absolute
// symlink on the way to p.
func removeTree(root *host.Root, p string) error {
	r, err := os.OpenRoot(root.Dir())
	if err != nil {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	defer r.Close()
	if err := r.RemoveAll(strings.TrimPrefix(p, "/")); err != nil {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}
