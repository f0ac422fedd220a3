package units

import (
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/nodeprov/nodeprov/stages/host"
)

// ContainerdConfigDir holds containerd's configuration; a change below it
// in this run restarts containerd.service.
const ContainerdConfigDir = "/etc/containerd"

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
// programs it runs, containerd's configuration for containerd.service, and
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
		if name == ContainerdUnitName {
			hit = hit || under(c, ContainerdConfigDir)
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
