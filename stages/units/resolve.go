package units

import (
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// Resolving units: which unit file systemd will load for each spec entry,
// what nodeprov writes, and the drop-ins that apply.

// resolveAll resolves the spec's units, plus the implied built-in services
// (containerd.service, docker.service) the spec configures without listing
// them: their restarts are still due when their configuration or binaries
// change.
func (p *planner) resolveAll() ([]*unitPlan, error) {
	n := p.env.Spec
	p.written = map[string]*unitPlan{}
	out := make([]*unitPlan, len(n.Units))
	listed := map[string]bool{}
	// Units with their own file first, so that an instance of a template
	// the spec gives finds it; the order of actions stays the spec's.
	for _, own := range []bool{true, false} {
		for i, u := range n.Units {
			if p.ownFile(u) != own {
				continue
			}
			up, err := p.resolve(u, fmt.Sprintf("units[%d]", i), false)
			if err != nil {
				return nil, err
			}
			out[i] = up
			listed[u.Name] = true
		}
	}
	if p.s.FirstBoot != nil {
		if slices.ContainsFunc(n.Units, func(u spec.Unit) bool { return u.Name == FirstBootUnitName }) {
			return nil, fmt.Errorf("unit %s is nodeprov's own first-boot unit, installed when asked for; remove it from the spec", FirstBootUnitName)
		}
		up, err := p.resolve(p.s.FirstBoot.unit(), "first-boot unit", false)
		if err != nil {
			return nil, err
		}
		up.boot = true
		out = append(out, up)
	}
	for _, name := range impliedUnits(n) {
		if listed[name] {
			continue
		}
		up, err := p.resolve(spec.Unit{Name: name}, "implied by "+strings.TrimSuffix(name, ".service"), true)
		if err != nil {
			return nil, err
		}
		if up != nil {
			out = append(out, up)
		}
	}
	for _, up := range out {
		for _, a := range append([]*plan.Action{up.fileAct}, up.dropActs...) {
			if a != nil && a.Op.Changes() {
				p.changedHere = append(p.changedHere, a.Paths...)
			}
		}
	}
	return out, nil
}

// ownFile reports whether nodeprov writes u's unit file: inline contents,
// or a built-in unit.
func (p *planner) ownFile(u spec.Unit) bool {
	if u.Contents != "" {
		return true
	}
	b, err := builtinContents(p.env.Spec, u.Name)
	return !u.Masked && (b != nil || err != nil)
}

// resolve works out one unit's files: what nodeprov writes, what systemd
// will load, and the parsed contents. An implicit unit without any unit
// file is dropped (nil).
func (p *planner) resolve(u spec.Unit, where string, implicit bool) (*unitPlan, error) {
	name := u.Name
	fail := func(err error) (*unitPlan, error) {
		return nil, fmt.Errorf("unit %s (%s): %w", name, where, err)
	}
	if err := checkUnit(u); err != nil {
		return fail(err)
	}
	up := &unitPlan{u: u, where: where, implicit: implicit}
	switch {
	case u.Contents != "" && u.Masked:
		return fail(fmt.Errorf("a masked unit is a link to /dev/null and has no unit file: drop contents or masked"))
	case u.Contents != "":
		up.contents = []byte(u.Contents)
	case !implicit && !u.Masked:
		b, err := builtinContents(p.env.Spec, name)
		if err != nil {
			return fail(err)
		}
		if b != nil {
			up.contents, up.where = b, where+", built in"
		}
	}
	if up.contents != nil {
		f, err := parseStrict(name, up.contents, false)
		if err != nil {
			return fail(err)
		}
		up.main, up.file = f, path.Join(SystemDir, name)
		p.written[up.file] = up
		a, err := plan.PlanFile(p.root, "unit "+name, plan.FileSpec{Path: up.file, Data: up.contents, Mode: 0o644})
		if err != nil {
			return fail(err)
		}
		up.fileAct = a
	} else {
		file, pending, err := p.locate(name)
		if err != nil {
			return fail(err)
		}
		if file == "" && implicit {
			return nil, nil
		}
		if file == "" && !u.Masked {
			return fail(fmt.Errorf("no contents in the spec, no built-in unit, and no unit file in the root (looked in %s): give contents or install the unit first", strings.Join(unitDirs(), ", ")))
		}
		up.file, up.pending = file, pending
		if w := p.written[file]; w != nil {
			up.main = w.main
		} else if file != "" && !pending {
			data, ok, err := p.root.ReadFile(file)
			if err != nil {
				return fail(err)
			}
			if !ok {
				return fail(fmt.Errorf("%s is a dangling symlink", file))
			}
			if up.main, err = parseLenient(data); err != nil {
				return fail(fmt.Errorf("%s: %w", file, err))
			}
		}
	}
	if err := p.resolveDropins(up); err != nil {
		return fail(err)
	}
	if up.contents != nil && unitType(name) == "service" {
		if err := checkService(append([]*unitFile{up.main}, up.dropins...)); err != nil {
			return fail(err)
		}
	}
	var err error
	if up.masked, up.maskAt, err = maskState(p.root, name); err != nil {
		return fail(err)
	}
	if up.main != nil {
		if up.info, err = parseInstall(name, up.main); err != nil {
			return fail(err)
		}
	}
	return up, nil
}

// checkUnit repeats the spec's checks that the stage relies on, for specs
// that did not go through validation.
func checkUnit(u spec.Unit) error {
	switch unitType(u.Name) {
	case "service", "socket", "timer", "mount", "automount", "target", "path", "slice", "scope", "swap", "device":
	default:
		return fmt.Errorf("invalid unit name %q: expected a name with a unit suffix such as .service", u.Name)
	}
	if strings.ContainsAny(u.Name, "/\x00") || strings.HasPrefix(u.Name, ".") {
		return fmt.Errorf("invalid unit name %q", u.Name)
	}
	switch u.State {
	case "", "unchanged", "started", "stopped":
	default:
		return fmt.Errorf("invalid state %q: expected started, stopped or unchanged", u.State)
	}
	if u.Masked && (u.State == "started" || (u.Enabled != nil && *u.Enabled)) {
		return fmt.Errorf("a masked unit cannot be enabled or started")
	}
	for _, d := range u.Dropins {
		if !strings.HasSuffix(d.Name, ".conf") || d.Name == ".conf" || strings.ContainsAny(d.Name, "/\x00") {
			return fmt.Errorf("invalid drop-in name %q: expected a file name ending in .conf", d.Name)
		}
	}
	return nil
}

// locate finds the unit file systemd would load for name, as systemctl
// does: name in each unit directory, then its template. A mask is not a
// unit file. A file an earlier stage writes in this run counts (pending in
// plan mode, where it is not on disk yet).
func (p *planner) locate(name string) (file string, pending bool, err error) {
	names := []string{name}
	if t := templateOf(name); t != "" {
		names = append(names, t)
	}
	for _, n := range names {
		for _, d := range unitDirs() {
			f := path.Join(d, n)
			if p.written[f] != nil {
				return f, false, nil
			}
			st, err := p.root.Lstat(f)
			if err != nil {
				return "", false, err
			}
			if st.Exists && !(st.Type == fs.ModeSymlink && st.LinkTarget == "/dev/null") {
				return f, false, nil
			}
			if !st.Exists && contains(p.changed, f) {
				return f, true, nil
			}
		}
	}
	return "", false, nil
}

// resolveDropins validates and plans the spec's drop-ins and collects the
// effective drop-ins in SystemDir/<name>.d (the spec's, and files already
// there such as the containerd stage's proxy drop-in) in name order.
func (p *planner) resolveDropins(up *unitPlan) error {
	name := up.name()
	dir := path.Join(SystemDir, name+".d")
	byName := map[string]*unitFile{}
	for j, d := range up.u.Dropins {
		f, err := parseStrict(name, []byte(d.Contents), true)
		if err != nil {
			return fmt.Errorf("drop-in %s (%s.dropins[%d]): %w", d.Name, up.where, j, err)
		}
		a, err := plan.PlanFile(p.root, "dropin "+name+"/"+d.Name, plan.FileSpec{Path: path.Join(dir, d.Name), Data: []byte(d.Contents), Mode: 0o644})
		if err != nil {
			return err
		}
		up.dropActs = append(up.dropActs, a)
		byName[d.Name] = f
	}
	names, err := listDir(p.root, dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		if _, ok := byName[n]; ok || !strings.HasSuffix(n, ".conf") {
			continue
		}
		data, ok, err := p.root.ReadFile(path.Join(dir, n))
		if err != nil || !ok {
			continue // not a readable regular file: systemd skips it too
		}
		if f, err := parseLenient(data); err == nil {
			byName[n] = f
		}
	}
	keys := make([]string, 0, len(byName))
	for k := range byName {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		up.dropins = append(up.dropins, byName[k])
	}
	return nil
}
