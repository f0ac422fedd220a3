// Package units is the units stage: systemd unit files and drop-ins,
// enablement, masks and run state.
//
// Live (the target is "/" and systemd runs) it talks to systemd over D-Bus:
// one daemon-reload when unit files or links changed, enable, mask, start,
// stop, and a restart of exactly the running units whose unit file,
// drop-ins, programs or configuration changed in this run. Offline (an
// image root, or no systemd running) it creates the links `systemctl
// --root=DIR enable` would and reports start and restart as deferred to
// boot.
package units

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// Stage converges the spec's units.
type Stage struct {
	// NoBlock queues start, stop and restart jobs without waiting for
	// their results (reported as "queued"): inside cloud-init or a
	// first-boot unit, waiting for a unit ordered after the caller
	// deadlocks.
	NoBlock bool
	// FirstBoot, when set, also installs the first-boot unit for golden
	// images (see FirstBoot).
	FirstBoot *FirstBoot
	// Connect opens a connection to the live systemd; nil uses Dial.
	Connect func(ctx context.Context) (Systemd, error)
	// Journal returns a unit's last journal lines for failed jobs; nil
	// uses the package's Journal (journalctl).
	Journal func(ctx context.Context, unit string) (string, error)
	// Booted reports whether systemd runs on the target; nil uses the
	// package's Booted.
	Booted func(root *host.Root) bool
	// JobTimeout bounds the wait for one job; 0 means 10 minutes.
	JobTimeout time.Duration
}

// Name implements plan.Stage.
func (Stage) Name() string { return "units" }

// planner holds one Plan call's state.
type planner struct {
	s       Stage
	env     *plan.Env
	root    *host.Root
	live    bool
	changed []string // paths changed earlier in this run, sorted
	// written are the unit files this stage writes, by path: an instance
	// whose template the spec gives is found (and read) there.
	written map[string]*unitPlan
	// changedHere are the unit files and drop-ins this stage changes.
	changedHere []string
}

// unitPlan is everything planned for one unit.
type unitPlan struct {
	u        spec.Unit
	where    string // spec path for messages: "units[2]"
	implicit bool   // not in the spec: containerd.service watched for restarts
	boot     bool   // the first-boot unit: enabled, never started by the stage
	contents []byte // the unit file nodeprov writes; nil when it writes none
	file     string // the unit file systemd loads; "" when there is none
	pending  bool   // file is written by an earlier stage of this (planned) run
	main     *unitFile
	dropins  []*unitFile // effective drop-ins in SystemDir, by name
	fileAct  *plan.Action
	dropActs []*plan.Action
	masked   bool
	maskAt   host.FileState // what is at SystemDir/<name>
	info     installInfo
	status   UnitStatus // live only
}

func (u *unitPlan) name() string { return u.u.Name }

// Plan implements plan.Stage. Actions come in this order: the first-boot
// files (when asked for), unit files and drop-ins, unmask, enable/disable,
// mask, daemon-reload (live), then stop/start/restart.
func (s Stage) Plan(ctx context.Context, env *plan.Env) ([]*plan.Action, error) {
	if env.Spec == nil {
		return nil, nil
	}
	p := &planner{s: s, env: env, root: env.Root}
	if env.Changes != nil {
		p.changed = env.Changes.Paths()
	}
	booted := s.Booted
	if booted == nil {
		booted = Booted
	}
	p.live = env.Live && booted(env.Root)

	var actions []*plan.Action
	if s.FirstBoot != nil {
		fb, err := p.firstBootFiles()
		if err != nil {
			return nil, err
		}
		actions = fb
	}
	units, err := p.resolveAll()
	if err != nil {
		return nil, err
	}
	if len(units) == 0 && !(p.live && len(unitDirChanges(p.changed)) > 0) {
		return nil, nil
	}
	if env.Live && !p.live {
		env.Warnf("systemd is not running on this host: units are enabled with links as in an image root, and start, stop and restart wait for the next live apply")
	}
	if p.live {
		if err := p.readStatus(ctx, units); err != nil {
			return nil, err
		}
	}

	for _, u := range units {
		if u.fileAct != nil {
			actions = append(actions, u.fileAct)
		}
		actions = append(actions, u.dropActs...)
	}
	var links []*plan.Action
	for _, step := range []func(*unitPlan) (*plan.Action, error){p.unmask, p.enable, p.mask} {
		for _, u := range units {
			a, err := step(u)
			if err != nil {
				return nil, fmt.Errorf("unit %s (%s): %w", u.name(), u.where, err)
			}
			if a != nil {
				links = append(links, a)
			}
		}
	}
	actions = append(actions, links...)
	if p.live {
		actions = append(actions, p.reload(units, links))
	}
	for _, u := range units {
		if a := p.runState(u); a != nil {
			actions = append(actions, a)
		}
	}
	return actions, nil
}

// resolveAll resolves the spec's units, plus containerd.service when the
// spec configures containerd without listing the unit: its restarts are
// still due when its configuration or binary changes.
func (p *planner) resolveAll() ([]*unitPlan, error) {
	n := p.env.Spec
	p.written = map[string]*unitPlan{}
	out := make([]*unitPlan, len(n.Units))
	listed := false
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
			listed = listed || u.Name == ContainerdUnitName
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
	if !listed && (n.Containerd != nil || n.Components.Containerd != nil) {
		up, err := p.resolve(spec.Unit{Name: ContainerdUnitName}, "implied by containerd", true)
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

// readStatus asks the live systemd for each unit's state.
func (p *planner) readStatus(ctx context.Context, units []*unitPlan) error {
	if len(units) == 0 {
		return nil
	}
	conn, err := p.s.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, u := range units {
		st, err := conn.Status(ctx, u.name())
		if err != nil {
			return fmt.Errorf("unit %s: read state from systemd: %w", u.name(), err)
		}
		u.status = st
	}
	return nil
}

// withConn runs fn on a fresh connection to the live systemd.
func (s Stage) withConn(ctx context.Context, fn func(Systemd) error) error {
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return fn(conn)
}

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

// restartReasons lists what changed in this run that a running unit must
// be restarted for; empty means it is never restarted.
func (p *planner) restartReasons(u *unitPlan) []string {
	var why []string
	if u.fileAct != nil && u.fileAct.Op.Changes() {
		why = append(why, "unit file")
	}
	for i, d := range u.dropActs {
		if d.Op.Changes() {
			why = append(why, "drop-in "+u.u.Dropins[i].Name)
		}
	}
	var bins []string
	if u.main != nil {
		exists := func(q string) bool {
			st, err := p.root.Lstat(q)
			return (err == nil && st.Exists) || contains(p.changed, q)
		}
		bins = binaries(p.root, append([]*unitFile{u.main}, u.dropins...), exists)
	}
	// What this stage changes for other units counts too: the template
	// of an instance, or its drop-ins.
	changed := slices.Clone(p.changed)
	for _, c := range p.changedHere {
		if !slices.ContainsFunc(append([]*plan.Action{u.fileAct}, u.dropActs...), func(a *plan.Action) bool {
			return a != nil && slices.Contains(a.Paths, c)
		}) {
			changed = append(changed, c)
		}
	}
	why = append(why, earlierReasons(u.name(), changed, bins, u.u.RestartOn)...)
	if p.live && u.status.NeedDaemonReload {
		why = append(why, "unit files changed on disk since systemd loaded them")
	}
	if p.live && len(why) == 0 {
		why = append(why, p.newerThanStart(u, bins)...)
	}
	return why
}

// newerThanStart finds the unit's inputs (unit file, drop-ins, programs,
// containerd's config.toml, restartOn files) written after the unit last
// started: a run that wrote them and was killed before its restart left
// the unit running old code or configuration, and the next run, which
// finds nothing to change, must still restart it. A time in the future
// (an image built on a machine whose clock was ahead) is not trusted.
func (p *planner) newerThanStart(u *unitPlan, bins []string) []string {
	started := u.status.ActiveEnter
	if started.IsZero() || !u.status.running() {
		return nil
	}
	inputs := slices.Clone(bins)
	if u.file != "" {
		inputs = append(inputs, u.file)
	}
	for _, d := range u.u.Dropins {
		inputs = append(inputs, path.Join(SystemDir, u.name()+".d", d.Name))
	}
	if u.name() == ContainerdUnitName {
		inputs = append(inputs, path.Join(ContainerdConfigDir, "config.toml"))
	}
	inputs = append(inputs, u.u.RestartOn...)
	now := time.Now()
	var out []string
	for _, in := range inputs {
		st, err := p.root.Lstat(in)
		if err != nil || !st.Exists || st.Type != 0 {
			continue
		}
		if m := time.Unix(0, st.MtimeNs); m.After(started) && !m.After(now) {
			out = append(out, fmt.Sprintf("%s was written after the unit started (%s > %s)", in,
				m.UTC().Format(time.RFC3339), started.UTC().Format(time.RFC3339)))
		}
	}
	return out
}

// runState plans start, stop or restart. Live: a stopped unit is stopped;
// a running unit is restarted when something it uses changed; a started
// unit that is not running is started (which picks up every change).
// Offline these are deferred: an image runs nothing until it boots.
func (p *planner) runState(u *unitPlan) *plan.Action {
	name, state := u.name(), u.u.State
	if u.boot || (u.u.Masked && state != "stopped") {
		return nil
	}
	why := p.restartReasons(u)
	changed := "changed: " + strings.Join(why, ", ")
	if !p.live {
		switch {
		case state == "started":
			d := "started at boot (enabled)"
			if !p.enabledAtBoot(u) {
				d = "start deferred to a live apply (not enabled, so boot does not start it)"
			}
			return &plan.Action{Resource: "start " + name, Op: plan.OpDeferred, Detail: d}
		case state == "stopped":
			return &plan.Action{Resource: "stop " + name, Op: plan.OpDeferred, Detail: "stopped by the next live apply (nothing runs in an image root)"}
		case len(why) > 0:
			return &plan.Action{Resource: "restart " + name, Op: plan.OpDeferred, Detail: "restart deferred: takes effect at boot (" + changed + ")"}
		}
		return nil
	}
	st := u.status
	switch {
	case state == "stopped" && st.running():
		return p.job(JobStop, name, st.ActiveState+" -> stopped", false)
	case state == "stopped":
		return &plan.Action{Resource: "stop " + name, Op: plan.OpNone, Detail: st.ActiveState}
	case st.running() && len(why) > 0:
		return p.job(JobRestart, name, changed, false)
	case st.running() && state == "started":
		return &plan.Action{Resource: "start " + name, Op: plan.OpNone, Detail: st.ActiveState + " (" + st.SubState + ")"}
	case st.running():
		return nil
	case state == "started":
		d := or(st.ActiveState, "inactive") + " -> active"
		if len(why) > 0 {
			d += " (" + changed + ")"
		}
		return p.job(JobStart, name, d, st.ActiveState == "failed")
	case len(why) > 0:
		return &plan.Action{Resource: "restart " + name, Op: plan.OpNone, Detail: "not running: changes apply when it starts (" + changed + ")"}
	}
	return nil
}

// enabledAtBoot reports whether the unit will be enabled after this run:
// enabled is set, or it is left as is and its [Install] links exist.
func (p *planner) enabledAtBoot(u *unitPlan) bool {
	if u.u.Enabled != nil {
		return *u.u.Enabled
	}
	if u.main == nil || u.info.empty() {
		return false
	}
	links, err := installLinks(u.name(), u.file, u.info)
	if err != nil || len(links) == 0 {
		return false
	}
	for _, l := range links {
		if st, _, err := checkLink(p.root, l); err != nil || st != linkOK {
			return false
		}
	}
	return true
}

// job is an action that runs a start, stop or restart job.
func (p *planner) job(kind JobKind, name, detail string, resetFailed bool) *plan.Action {
	a := &plan.Action{Resource: string(kind) + " " + name, Op: plan.OpUpdate, Detail: detail}
	var result string
	a.Run = func(ctx context.Context) error {
		r, err := p.s.runJob(ctx, kind, name, resetFailed)
		result = r
		return err
	}
	a.Result = func() string { return detail + "; " + result }
	return a
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
