package units

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nodeprov/nodeprov/stages/host"
)

// SystemDir is where nodeprov writes unit files, drop-ins, enablement
// links and masks, like systemctl without --runtime.
const SystemDir = "/etc/systemd/system"

// unitDirs are the directories units are looked up in, in systemd's order
// on a Debian-built systemd (which also searches /lib); /run is left out:
// nothing there survives a reboot.
func unitDirs() []string {
	return []string{SystemDir, "/usr/local/lib/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"}
}

// depKinds are the [Install] keys that create links in <target>.<suffix>/.
func depKinds() []struct{ key, suffix string } {
	return []struct{ key, suffix string }{{"WantedBy", ".wants"}, {"RequiredBy", ".requires"}, {"UpheldBy", ".upholds"}}
}

// link is a symlink systemctl enable would create.
type link struct {
	path   string // in-root path of the link
	target string // what it points to
}

// rel names a link for messages: its path under SystemDir.
func (l link) rel() string { return strings.TrimPrefix(l.path, SystemDir+"/") }

// installInfo is what [Install] says about enabling a unit.
type installInfo struct {
	deps            map[string][]string // [Install] key -> target units
	alias, also     []string
	defaultInstance string
}

// empty reports a unit without enablement information ("static").
func (i installInfo) empty() bool {
	for _, t := range i.deps {
		if len(t) > 0 {
			return false
		}
	}
	return len(i.alias) == 0
}

// parseInstall reads [Install] of a unit file; drop-ins do not count, as
// for systemctl enable.
func parseInstall(name string, f *unitFile) (installInfo, error) {
	info := installInfo{deps: map[string][]string{}}
	words := func(key string) ([]string, error) {
		var out []string
		for _, v := range list([]*unitFile{f}, "Install", key) {
			for _, w := range strings.Fields(v) {
				if strings.Contains(w, "%") {
					return nil, fmt.Errorf("[Install] %s=%s: specifiers are not supported by nodeprov's enablement", key, w)
				}
				if strings.ContainsAny(w, "/\x00") || unitType(w) == "" {
					return nil, fmt.Errorf("[Install] %s=%s: not a unit name", key, w)
				}
				out = append(out, w)
			}
		}
		return out, nil
	}
	var err error
	for _, k := range depKinds() {
		if info.deps[k.key], err = words(k.key); err != nil {
			return info, err
		}
	}
	if info.alias, err = words("Alias"); err != nil {
		return info, err
	}
	for _, a := range info.alias {
		if unitType(a) != unitType(name) {
			return info, fmt.Errorf("[Install] Alias=%s: an alias must have the unit's suffix .%s", a, unitType(name))
		}
	}
	if info.also, err = words("Also"); err != nil {
		return info, err
	}
	info.defaultInstance = last([]*unitFile{f}, "Install", "DefaultInstance")
	return info, nil
}

// splitInstance splits "getty@tty1.service" into "getty", "tty1"; ok is
// false for a name without "@".
func splitInstance(name string) (prefix, instance string, ok bool) {
	base := strings.TrimSuffix(name, path.Ext(name))
	prefix, instance, ok = strings.Cut(base, "@")
	return prefix, instance, ok
}

// templateOf returns the template of an instance name ("getty@.service"
// for "getty@tty1.service"), or "" when name is not an instance.
func templateOf(name string) string {
	prefix, inst, ok := splitInstance(name)
	if !ok || inst == "" {
		return ""
	}
	return prefix + "@" + path.Ext(name)
}

// linkName is the name a unit is enabled under: itself, or for a template
// its DefaultInstance.
func linkName(name string, info installInfo) (string, error) {
	prefix, inst, ok := splitInstance(name)
	if !ok || inst != "" {
		return name, nil
	}
	if info.defaultInstance == "" {
		return "", fmt.Errorf("template unit %s has no DefaultInstance= in [Install]: enable an instance such as %s@name%s instead", name, prefix, path.Ext(name))
	}
	return prefix + "@" + info.defaultInstance + path.Ext(name), nil
}

// installLinks computes the links `systemctl enable name` creates for the
// unit file at file: <target>.wants/ (WantedBy), .requires/ (RequiredBy),
// .upholds/ (UpheldBy) and Alias= links in SystemDir, all pointing at file.
func installLinks(name, file string, info installInfo) ([]link, error) {
	ln, err := linkName(name, info)
	if err != nil {
		return nil, err
	}
	var out []link
	add := func(p string) {
		if !slices.ContainsFunc(out, func(l link) bool { return l.path == p }) {
			out = append(out, link{path: p, target: file})
		}
	}
	for _, k := range depKinds() {
		for _, t := range info.deps[k.key] {
			add(path.Join(SystemDir, t+k.suffix, ln))
		}
	}
	// An alias takes the instance of the name being enabled, not of
	// DefaultInstance: systemctl enable foo@.service links bar@.service.
	_, inst, _ := splitInstance(name)
	for _, a := range info.alias {
		if p, ai, ok := splitInstance(a); ok && ai == "" && inst != "" {
			a = p + "@" + inst + path.Ext(a)
		}
		add(path.Join(SystemDir, a))
	}
	return out, nil
}

// equivalent reports whether a link at linkPath pointing to current counts
// as pointing to want: the same path, or — as systemctl decides — a unit
// file of the same name in another unit directory (/lib versus /usr/lib).
func equivalent(linkPath, current, want string) bool {
	if !path.IsAbs(current) {
		current = path.Join(path.Dir(linkPath), current)
	}
	current = path.Clean(current)
	if current == want {
		return true
	}
	return path.Base(current) == path.Base(want) && slices.Contains(unitDirs(), path.Dir(current)) &&
		slices.Contains(unitDirs(), path.Dir(want))
}

// linkStatus is what exists at a wanted link path.
type linkStatus int

const (
	linkMissing linkStatus = iota
	linkOK
	linkOther // a symlink to something else
)

// checkLink inspects l.path; anything there but a symlink is an error, so
// an operator's file is never replaced by a link.
func checkLink(root *host.Root, l link) (linkStatus, string, error) {
	st, err := root.Lstat(l.path)
	switch {
	case err != nil:
		return 0, "", err
	case !st.Exists:
		return linkMissing, "", nil
	case st.Type != fs.ModeSymlink:
		return 0, "", fmt.Errorf("%s exists and is a %s, not a symlink; remove it", l.path, typeName(st.Type))
	case equivalent(l.path, st.LinkTarget, l.target):
		return linkOK, st.LinkTarget, nil
	}
	return linkOther, st.LinkTarget, nil
}

func typeName(t fs.FileMode) string {
	if t == 0 {
		return "regular file"
	}
	if t&fs.ModeDir != 0 {
		return "directory"
	}
	return "special file"
}

// createLinks makes each link, replacing a symlink that points elsewhere.
func createLinks(root *host.Root, links []link) error {
	for _, l := range links {
		if err := root.Symlink(l.target, l.path); err != nil {
			return err
		}
	}
	return nil
}

// removeLinks removes links and, like systemctl disable, the .wants/
// directories they leave empty.
func removeLinks(root *host.Root, paths []string) error {
	for _, p := range paths {
		if err := root.Remove(p); err != nil {
			return err
		}
		dir := path.Dir(p)
		if dir == SystemDir {
			continue
		}
		if err := root.Remove(dir); err != nil && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
			return err
		}
	}
	return nil
}

// enabledLinks finds the links that enable the unit name, whose unit file
// is file ("" when it has none), the way systemctl disable does: symlinks
// in SystemDir and in its .wants/, .requires/ and .upholds/ directories
// that are named like the unit (names: the unit and its DefaultInstance)
// or, unless name is an instance, point to a file named like its unit file
// (aliases, and links made for it from another unit directory). The unit
// file itself and a mask are not such links.
func enabledLinks(root *host.Root, name, file string, names []string) ([]string, error) {
	_, inst, _ := splitInstance(name)
	byTarget := inst == "" && file != ""
	var out []string
	scan := func(dir string) error {
		entries, err := listDir(root, dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			p := path.Join(dir, e)
			if p == file || p == path.Join(SystemDir, name) {
				continue
			}
			st, err := root.Lstat(p)
			if err != nil {
				return err
			}
			if st.Type != fs.ModeSymlink || st.LinkTarget == "/dev/null" {
				continue
			}
			if slices.Contains(names, e) || (byTarget && path.Base(st.LinkTarget) == path.Base(file)) {
				out = append(out, p)
			}
		}
		return nil
	}
	if err := scan(SystemDir); err != nil {
		return nil, err
	}
	dirs, err := listDir(root, SystemDir)
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		if slices.ContainsFunc(depKinds(), func(k struct{ key, suffix string }) bool { return strings.HasSuffix(d, k.suffix) }) {
			if err := scan(path.Join(SystemDir, d)); err != nil {
				return nil, err
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// listDir returns the names in the in-root directory dir, sorted; a missing
// directory (or a non-directory) has none. os.Root confines the listing to
// the root like host.Root confines every other access.
func listDir(root *host.Root, dir string) ([]string, error) {
	st, err := root.Lstat(dir)
	if err != nil || !st.Exists || st.Type != fs.ModeDir {
		return nil, err
	}
	r, err := os.OpenRoot(root.Dir())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	defer r.Close()
	f, err := r.Open(strings.TrimPrefix(dir, "/"))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	slices.Sort(names)
	return names, nil
}

// maskState says whether SystemDir/name masks the unit, and whether that
// path holds a regular file instead.
func maskState(root *host.Root, name string) (masked bool, st host.FileState, err error) {
	st, err = root.Lstat(path.Join(SystemDir, name))
	if err != nil {
		return false, st, err
	}
	return st.Exists && st.Type == fs.ModeSymlink && st.LinkTarget == "/dev/null", st, nil
}
