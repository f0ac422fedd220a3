package units

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/nodeprov/nodeprov/stages/plan"
)

// Enablement and masks: [Install] links, /dev/null masks, daemon-reload.

// unmask removes a mask the spec no longer wants. A unit whose file
// nodeprov writes needs none: writing the file replaces the mask.
func (p *planner) unmask(u *unitPlan) (*plan.Action, error) {
	if u.u.Masked || !u.masked || u.contents != nil {
		return nil, nil
	}
	name, at := u.name(), path.Join(SystemDir, u.name())
	a := &plan.Action{Resource: "unmask " + name, Op: plan.OpDelete, Detail: "remove " + at + " -> /dev/null", Paths: []string{at}}
	a.Run = func(ctx context.Context) error {
		if p.live {
			return p.s.withConn(ctx, func(c Systemd) error { return c.UnmaskUnitFiles(ctx, []string{name}) })
		}
		return p.root.Remove(at)
	}
	return a, nil
}

// mask links SystemDir/<name> to /dev/null. A symlink there is replaced;
// a regular file only when nodeprov generated it (its built-in unit).
func (p *planner) mask(u *unitPlan) (*plan.Action, error) {
	if !u.u.Masked {
		return nil, nil
	}
	name, at := u.name(), path.Join(SystemDir, u.name())
	a := &plan.Action{Resource: "mask " + name, Paths: []string{at}}
	if u.masked {
		a.Op, a.Detail = plan.OpNone, "masked"
		return a, nil
	}
	a.Op, a.Detail = plan.OpCreate, "link "+at+" -> /dev/null"
	removeFirst := false
	switch st := u.maskAt; {
	case !st.Exists:
	case st.Type == fs.ModeSymlink:
		a.Op, a.Detail = plan.OpUpdate, fmt.Sprintf("replace link to %s with a link to /dev/null", st.LinkTarget)
	case st.Type == 0:
		data, _, err := p.root.ReadFile(at)
		if err != nil {
			return nil, err
		}
		if !bytes.HasPrefix(data, []byte(plan.ManagedHeader)) {
			return nil, fmt.Errorf("cannot mask: %s is a unit file nodeprov did not write; remove it first", at)
		}
		removeFirst = true
		a.Op, a.Detail = plan.OpUpdate, "replace nodeprov's unit file with a link to /dev/null"
	default:
		return nil, fmt.Errorf("cannot mask: %s is a %s", at, typeName(st.Type))
	}
	a.Run = func(ctx context.Context) error {
		if removeFirst {
			// systemd never replaces a regular file with a mask.
			if err := p.root.Remove(at); err != nil {
				return err
			}
		}
		if p.live {
			return p.s.withConn(ctx, func(c Systemd) error { return c.MaskUnitFiles(ctx, []string{name}) })
		}
		return p.root.Symlink("/dev/null", at)
	}
	return a, nil
}

// enable plans enabled: true (the [Install] links) or false (removing every
// link that enables the unit); nothing when enabled is not set.
func (p *planner) enable(u *unitPlan) (*plan.Action, error) {
	if u.u.Enabled == nil {
		return nil, nil
	}
	if !*u.u.Enabled {
		return p.disable(u)
	}
	name := u.name()
	a := &plan.Action{Resource: "enable " + name}
	if u.pending {
		a.Op, a.Detail = plan.OpCreate, "links from [Install] of "+u.file+", written earlier in this run"
		a.Run = func(ctx context.Context) error { return p.enableNow(ctx, u) }
		return a, nil
	}
	if u.info.empty() {
		p.env.Warnf("unit %s: enabled is set, but the unit has no [Install] section (a static unit): there is nothing to enable", name)
		a.Op, a.Detail = plan.OpNone, "static: no [Install] section"
		return a, nil
	}
	if len(u.info.also) > 0 {
		p.env.Warnf("unit %s: [Install] Also=%s is not followed: list those units in the spec to enable them", name, strings.Join(u.info.also, " "))
	}
	links, err := installLinks(name, u.file, u.info)
	if err != nil {
		return nil, err
	}
	var todo, all []string
	for _, l := range links {
		st, cur, err := checkLink(p.root, l)
		if err != nil {
			return nil, err
		}
		all = append(all, l.rel())
		switch st {
		case linkMissing:
			todo = append(todo, l.rel())
			a.Paths = append(a.Paths, l.path)
		case linkOther:
			todo = append(todo, fmt.Sprintf("%s (replacing a link to %s)", l.rel(), cur))
			a.Paths = append(a.Paths, l.path)
		}
	}
	if len(todo) == 0 {
		a.Op, a.Detail = plan.OpNone, "enabled: "+strings.Join(all, ", ")
		return a, nil
	}
	a.Op, a.Detail = plan.OpCreate, "link "+strings.Join(todo, ", ")+" -> "+u.file
	a.Run = func(ctx context.Context) error { return p.enableNow(ctx, u) }
	return a, nil
}

// enableNow enables a unit: through systemd when live, else by creating its
// links (computed again, for a unit file written earlier in this run).
func (p *planner) enableNow(ctx context.Context, u *unitPlan) error {
	name := u.name()
	if p.live {
		return p.s.withConn(ctx, func(c Systemd) error { return c.EnableUnitFiles(ctx, []string{name}) })
	}
	main := u.main
	if main == nil {
		data, ok, err := p.root.ReadFile(u.file)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("unit %s: %s does not exist", name, u.file)
		}
		if main, err = parseLenient(data); err != nil {
			return fmt.Errorf("unit %s: %s: %w", name, u.file, err)
		}
	}
	info, err := parseInstall(name, main)
	if err != nil {
		return fmt.Errorf("unit %s: %w", name, err)
	}
	links, err := installLinks(name, u.file, info)
	if err != nil {
		return fmt.Errorf("unit %s: %w", name, err)
	}
	var todo []link
	for _, l := range links {
		st, _, err := checkLink(p.root, l)
		if err != nil {
			return err
		}
		if st != linkOK {
			todo = append(todo, l)
		}
	}
	return createLinks(p.root, todo)
}

// disable removes the links that enable a unit.
func (p *planner) disable(u *unitPlan) (*plan.Action, error) {
	name := u.name()
	names := []string{name}
	if u.main != nil {
		if ln, err := linkName(name, u.info); err == nil && ln != name {
			names = append(names, ln)
		}
	}
	paths, err := enabledLinks(p.root, name, u.file, names)
	if err != nil {
		return nil, err
	}
	a := &plan.Action{Resource: "disable " + name, Op: plan.OpNone, Detail: "not enabled"}
	if len(paths) == 0 {
		return a, nil
	}
	rels := make([]string, len(paths))
	for i, q := range paths {
		rels[i] = strings.TrimPrefix(q, SystemDir+"/")
	}
	a.Op, a.Detail, a.Paths = plan.OpDelete, "remove "+strings.Join(rels, ", "), paths
	a.Run = func(ctx context.Context) error {
		if p.live {
			return p.s.withConn(ctx, func(c Systemd) error { return c.DisableUnitFiles(ctx, []string{name}) })
		}
		return removeLinks(p.root, paths)
	}
	return a, nil
}

// reload plans the single daemon-reload of a live run: after any unit file,
// drop-in or link changed in this stage, after an earlier stage changed
// something in a unit directory (the containerd proxy drop-in), and when
// systemd says a unit's files changed since it loaded them.
func (p *planner) reload(units []*unitPlan, links []*plan.Action) *plan.Action {
	var why []string
	for _, u := range units {
		if u.fileAct != nil && u.fileAct.Op.Changes() {
			why = append(why, u.fileAct.Resource)
		}
		for _, d := range u.dropActs {
			if d.Op.Changes() {
				why = append(why, d.Resource)
			}
		}
	}
	why = append(why, unitDirChanges(p.changed)...)
	for _, l := range links {
		if l.Op.Changes() {
			why = append(why, l.Resource)
		}
	}
	for _, u := range units {
		if u.status.NeedDaemonReload {
			why = append(why, u.name()+" (changed on disk since systemd loaded it)")
		}
	}
	a := &plan.Action{Resource: "daemon-reload", Op: plan.OpNone, Detail: "no unit file changed"}
	if len(why) == 0 {
		return a
	}
	a.Op, a.Detail = plan.OpUpdate, "changed: "+strings.Join(why, ", ")
	a.Run = func(ctx context.Context) error {
		return p.s.withConn(ctx, func(c Systemd) error {
			if err := c.Reload(ctx); err != nil {
				return fmt.Errorf("daemon-reload: %w", err)
			}
			return nil
		})
	}
	return a
}
