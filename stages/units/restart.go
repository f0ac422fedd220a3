package units

import (
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// ContainerdConfigDir holds containerd's configuration; a change below it
// in this run restarts containerd.service.
const ContainerdConfigDir = "/etc/containerd"

// DockerConfigDir holds dockerd's daemon.json; a change below it in this
// run restarts docker.service.
const DockerConfigDir = "/etc/docker"

// execSearchPath is where systemd looks up an Exec*= command given without
// a directory (systemd 239 and later).
func execSearchPath() []string {
	return []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}
}

// execStarts applies ExecStart= across the unit file and its drop-ins in
// order: every value adds a command, an empty one resets the list.
func execStarts(files []*unitFile) []string {
	return list(files, "Service", "ExecStart")
}

// checkService refuses a service systemd would refuse to load: no
// ExecStart= (allowed only for Type=oneshot with ExecStop= or
// SuccessAction=), or several outside Type=oneshot.
func checkService(files []*unitFile) error {
	typ := last(files, "Service", "Type")
	n := len(execStarts(files))
	// Without Type= and ExecStart= (and BusName=), systemd implies oneshot.
	oneshot := typ == "oneshot" || (typ == "" && n == 0 && last(files, "Service", "BusName") == "")
	switch {
	case n == 0 && !oneshot:
		return fmt.Errorf("[Service] has no ExecStart= (only Type=oneshot services may omit it)")
	case n == 0 && len(list(files, "Service", "ExecStop")) == 0 && last(files, "Unit", "SuccessAction") == "":
		return fmt.Errorf("[Service] has no ExecStart=, ExecStop= or SuccessAction=")
	case n > 1 && !oneshot:
		return fmt.Errorf("[Service] has %d ExecStart= commands; only Type=oneshot services may have more than one", n)
	}
	return nil
}

// execBinary returns the program of an ExecStart= value: prefixes such as
// "-" and "+" removed, the first (possibly quoted) word.
func execBinary(v string) string {
	v = strings.TrimLeft(strings.TrimSpace(v), "@-:+!|")
	if v == "" {
		return ""
	}
	if q := v[0]; q == '"' || q == '\'' {
		if end := strings.IndexByte(v[1:], q); end >= 0 {
			return v[1 : 1+end]
		}
		return v[1:]
	}
	if i := strings.IndexAny(v, " \t"); i >= 0 {
		return v[:i]
	}
	return v
}

// binaries returns the in-root paths that hold the programs a unit runs
// (ExecStart=), each as written and resolved through symlinks in the root:
// an install into /usr/bin changes /bin/foo on a merged-/usr system.
func binaries(root *host.Root, files []*unitFile, exists func(string) bool) []string {
	var out []string
	add := func(p string) {
		if p != "" && !contains(out, p) {
			out = append(out, p)
		}
	}
	for _, v := range execStarts(files) {
		b := execBinary(v)
		if b == "" || strings.Contains(b, "%") {
			continue
		}
		if !path.IsAbs(b) {
			found := ""
			for _, d := range execSearchPath() {
				if p := path.Join(d, b); exists(p) {
					found = p
					break
				}
			}
			if found == "" {
				continue
			}
			b = found
		}
		b = path.Clean(b)
		add(b)
		add(realPath(root, b))
	}
	return out
}

// realPath resolves symlinks in p component by component, inside the root;
// a missing component ends the resolution there. It gives up (returning
// what it has) after 40 links, as the kernel does.
func realPath(root *host.Root, p string) string {
	parts := strings.Split(strings.TrimPrefix(path.Clean(p), "/"), "/")
	cur, hops := "/", 0
	for len(parts) > 0 {
		c := parts[0]
		parts = parts[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		st, err := root.Lstat(next)
		if err != nil || !st.Exists || st.Type != fs.ModeSymlink || hops >= 40 {
			cur = next
			continue
		}
		hops++
		if path.IsAbs(st.LinkTarget) {
			cur = "/"
		}
		parts = append(strings.Split(st.LinkTarget, "/"), parts...)
	}
	return cur
}

// under reports whether p is dir or inside it.
func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// earlierReasons lists the paths changed earlier in this run that affect a
// running unit: its unit file or drop-ins in any unit directory, the
// programs it runs, a built-in service's configuration (configInputs), and
// the unit's restartOn paths (files, or directories and what is below).
func earlierReasons(name string, changed, bins, restartOn []string) []string {
	var out []string
	for _, c := range changed {
		hit := contains(bins, c)
		for _, d := range unitDirs() {
			hit = hit || c == path.Join(d, name) || under(c, path.Join(d, name+".d"))
			if t := templateOf(name); t != "" {
				hit = hit || c == path.Join(d, t) || under(c, path.Join(d, t+".d"))
			}
		}
		if dir, _ := configInputs(name); dir != "" {
			hit = hit || under(c, dir)
		}
		for _, r := range restartOn {
			hit = hit || under(c, path.Clean(r))
		}
		if hit {
			out = append(out, c)
		}
	}
	return out
}

// unitDirChanges lists changed paths in unit directories: what an earlier
// stage wrote there needs a daemon-reload.
func unitDirChanges(changed []string) []string {
	var out []string
	for _, c := range changed {
		for _, d := range unitDirs() {
			if under(c, d) && c != d {
				out = append(out, c)
				break
			}
		}
	}
	return out
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
// a built-in service's configuration file, restartOn files) written after the unit last
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
	if _, file := configInputs(u.name()); file != "" {
		inputs = append(inputs, file)
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
