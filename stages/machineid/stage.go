package machineid

import (
	"context"
	"fmt"
	"io/fs"
	"strings"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// Policies: what a failed check does.
const (
	// PolicyFail stops the run with an error naming the checks.
	PolicyFail = "fail"
	// PolicyWarn records warnings and goes on.
	PolicyWarn = "warn"
	// PolicyRegenerate repairs: a new random id on a live host, a sealed
	// image offline.
	PolicyRegenerate = "regenerate"
)

// Stage checks the machine id before anything registers with it. On a live
// host it wants a valid id unique to the host; on an image root, a sealed
// image whose first boot generates one.
type Stage struct{}

// Name implements plan.Stage.
func (Stage) Name() string { return "machine-id" }

// Plan implements plan.Stage. Under policy fail a failed check is an error
// (a *CheckError); under warn it is a warning and an unchanged action;
// under regenerate the returned actions repair it, and a second run finds
// nothing to do. With machineID.fleet, a live run also asks the Kubernetes
// API whether another Node reports this host's id (checkFleet): a
// duplicate is one more failed check under the same policies; an API that
// cannot answer is an error, except under warn.
func (Stage) Plan(ctx context.Context, env *plan.Env) ([]*plan.Action, error) {
	policy, forbidden, fleet := PolicyFail, []string(nil), (*spec.Fleet)(nil)
	if env.Spec != nil {
		if p := env.Spec.MachineID.Policy; p != "" {
			policy = p
		}
		forbidden, fleet = env.Spec.MachineID.Forbidden, env.Spec.MachineID.Fleet
	}
	switch policy {
	case PolicyFail, PolicyWarn, PolicyRegenerate:
	default:
		return nil, fmt.Errorf("unknown machineID.policy %q (want fail, regenerate or warn)", policy)
	}
	st, err := Inspect(env.Root, env.Live, forbidden)
	if err != nil {
		return nil, err
	}
	var fleetAction *plan.Action
	if fleet != nil {
		if fleetAction, err = checkFleet(ctx, env.Root, env.Live, st, fleet); err != nil {
			// Without an answer nothing can be repaired: only warn
			// goes on, and says the check did not run.
			if policy != PolicyWarn {
				return nil, err
			}
			env.Warnf("%v", err)
			fleetAction = &plan.Action{Resource: FleetResource, Op: plan.OpNone, Detail: "warning (machineID.policy: warn): not checked: " + err.Error()}
		}
	}
	actions, err := planPolicy(env, policy, st)
	if err != nil || fleetAction == nil {
		return actions, err
	}
	return append(actions, fleetAction), nil
}

// planPolicy turns what Inspect found into actions, or an error, by
// policy.
func planPolicy(env *plan.Env, policy string, st *Status) ([]*plan.Action, error) {
	switch {
	case len(st.Problems) == 0:
		return []*plan.Action{passed(st)}, nil
	case policy == PolicyFail && env.Live:
		return nil, &CheckError{Problems: st.Problems}
	case policy == PolicyFail:
		// An image build applies first and seals last: an unsealed image
		// is expected mid-build. Say so; the live check at boot enforces.
		for _, p := range st.Problems {
			env.Warnf("%s: %s (image not sealed yet: run `nodeprov seal` before cloning it)", p.Check, p.Message)
		}
		return []*plan.Action{{Resource: "machine-id " + IDPath, Op: plan.OpDeferred, Detail: "checked at first boot; seal the image before cloning it"}}, nil
	case policy == PolicyWarn:
		return warn(env, st), nil
	case env.Live:
		return regenerate(env.Root, st)
	}
	return reseal(env.Root, st)
}

// passed is the unchanged action of a host or image that passed.
func passed(st *Status) *plan.Action {
	a := &plan.Action{Resource: "machine-id " + IDPath, Op: plan.OpNone}
	if st.Live {
		a.Detail = Abbrev(st.ID.ID) + " valid, unique"
		return a
	}
	a.Op = plan.OpDeferred
	switch st.ID.Content {
	case ContentEmpty:
		a.Detail = "image sealed (empty): systemd generates the id at boot (not a first boot)"
	case ContentMissing:
		a.Detail = "image sealed (no file): first boot generates the id; /etc must be writable then"
	default:
		a.Detail = "image sealed: first boot generates the id"
	}
	return a
}

// warn reports each problem as a warning and an unchanged action.
func warn(env *plan.Env, st *Status) []*plan.Action {
	var actions []*plan.Action
	for _, p := range st.Problems {
		env.Warnf("%s", p)
		actions = append(actions, &plan.Action{
			Resource: "machine-id " + p.Path,
			Op:       plan.OpNone,
			Detail:   "warning (machineID.policy: warn): " + p.String(),
		})
	}
	return actions
}

// regenerate repairs a live host: a new random id when the id itself
// failed a check, and the D-Bus copy replaced by a symlink when it is
// inconsistent (or would be, once the id changes).
func regenerate(root *host.Root, st *Status) ([]*plan.Action, error) {
	var idChecks []string
	for _, p := range st.Problems {
		if p.Path == IDPath {
			idChecks = append(idChecks, p.Check)
		}
	}
	if err := checkDbusReplaceable(st.Dbus); err != nil {
		return nil, err
	}
	if len(idChecks) == 0 { // only the D-Bus copy is wrong
		return []*plan.Action{linkDbus(root, st)}, nil
	}
	if st.ID.Type != 0 && st.ID.Type != fs.ModeSymlink {
		return nil, fmt.Errorf("cannot regenerate %s: it is a %s; remove it", IDPath, plan.TypeName(st.ID.Type))
	}
	id := NewID()
	a := &plan.Action{
		Resource: "machine-id " + IDPath,
		Op:       plan.OpUpdate,
		Detail:   fmt.Sprintf("%s -> %s (%s)", st.ID.describe(), Abbrev(id), strings.Join(idChecks, ", ")),
		Paths:    []string{IDPath},
	}
	fixDbus := st.Dbus.Exists && !st.DbusLinked
	if fixDbus {
		a.Detail += "; " + DbusPath + " -> symlink to " + IDPath
		a.Paths = append(a.Paths, DbusPath)
	}
	a.Run = func(context.Context) error {
		if err := writeID(root, id+"\n"); err != nil {
			return err
		}
		if fixDbus {
			return root.Symlink(IDPath, DbusPath)
		}
		return nil
	}
	return []*plan.Action{a}, nil
}

// linkDbus makes the D-Bus copy a symlink to /etc/machine-id, or leaves
// it when it already is one.
func linkDbus(root *host.Root, st *Status) *plan.Action {
	a := &plan.Action{Resource: "machine-id " + DbusPath, Paths: []string{DbusPath}}
	switch {
	case st.DbusLinked:
		a.Op, a.Detail = plan.OpNone, "symlink to "+IDPath
	case !st.Dbus.Exists:
		a.Op, a.Detail = plan.OpCreate, "symlink to "+IDPath
	default:
		a.Op, a.Detail = plan.OpUpdate, fmt.Sprintf("%s -> symlink to %s", dbusWas(st.Dbus), IDPath)
	}
	if a.Op.Changes() {
		a.Run = func(context.Context) error { return root.Symlink(IDPath, DbusPath) }
	}
	return a
}

// dbusWas names what the D-Bus copy was, for details.
func dbusWas(f File) string {
	if f.Type == fs.ModeSymlink {
		return "symlink to " + f.Target
	}
	return "copy " + f.describe()
}

// checkDbusReplaceable refuses to plan replacing a directory or another
// special file at the D-Bus path: that is for the operator to sort out.
func checkDbusReplaceable(f File) error {
	if f.Exists && f.Type != 0 && f.Type != fs.ModeSymlink {
		return fmt.Errorf("cannot replace %s: it is a %s; remove it", DbusPath, plan.TypeName(f.Type))
	}
	return nil
}

// reseal repairs an image root the way seal does (without clearing run
// state, which this run is using): record the baked ids, make the D-Bus
// copy a symlink and set /etc/machine-id to "uninitialized".
func reseal(root *host.Root, st *Status) ([]*plan.Action, error) {
	rec, dbus, id, err := planSealID(root, st, Uninitialized+"\n")
	if err != nil {
		return nil, err
	}
	idFailed := false
	for _, p := range st.Problems {
		idFailed = idFailed || p.Path == IDPath
	}
	var out []*plan.Action
	for _, a := range []*plan.Action{rec, dbus, id} {
		// Missing, empty and "uninitialized" are all sealed, and an absent
		// D-Bus copy is fine: only what failed a check is changed.
		skip := a == dbus && !st.Dbus.Exists || a == id && !idFailed
		if a.Op.Changes() && !skip {
			out = append(out, a)
		}
	}
	return out, nil
}

// writeID atomically replaces /etc/machine-id with data, mode 0444 like
// systemd's. The owner is the process (root when nodeprov runs as root).
func writeID(root *host.Root, data string) error {
	return root.WriteFile(IDPath, []byte(data), host.WriteOptions{Mode: 0o444, UID: -1, GID: -1})
}
