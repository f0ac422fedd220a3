package host

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// LookupUser returns the uid of name from the root's /etc/passwd (never the
// host's NSS). A numeric name is returned as is.
func (r *Root) LookupUser(name string) (int, error) {
	return r.lookupID("user", "/etc/passwd", name)
}

// LookupGroup returns the gid of name from the root's /etc/group (never the
// host's NSS). A numeric name is returned as is.
func (r *Root) LookupGroup(name string) (int, error) {
	return r.lookupID("group", "/etc/group", name)
}

// lookupID finds name in a colon-separated database whose third field is
// the numeric id (passwd and group share that layout).
func (r *Root) lookupID(kind, db, name string) (int, error) {
	if name == "" {
		return 0, fmt.Errorf("look up %s: empty name", kind)
	}
	if isDigits(name) {
		id, err := parseID(name)
		if err != nil {
			return 0, fmt.Errorf("look up %s %q: %w", kind, name, err)
		}
		return id, nil
	}
	if strings.ContainsAny(name, ":\n\x00") {
		return 0, fmt.Errorf("look up %s %q: invalid name", kind, name)
	}
	data, exists, err := r.ReadFile(db)
	if err != nil {
		return 0, fmt.Errorf("look up %s %q: %w", kind, name, err)
	}
	if !exists {
		return 0, fmt.Errorf("look up %s %q: %s does not exist%s", kind, name, db, r.inRoot())
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for line := 1; sc.Scan(); line++ {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 3 || fields[0] != name {
			continue
		}
		id, err := parseID(fields[2])
		if err != nil {
			return 0, fmt.Errorf("look up %s %q: %s line %d: %w", kind, name, db, line, err)
		}
		return id, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("look up %s %q: read %s: %w", kind, name, db, err)
	}
	return 0, fmt.Errorf("unknown %s %q: not in %s%s", kind, name, db, r.inRoot())
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// parseID parses a uid or gid; 4294967295 is (uid_t)-1 and never valid.
func parseID(s string) (int, error) {
	id, err := strconv.ParseUint(s, 10, 32)
	if err != nil || id == 1<<32-1 {
		return 0, fmt.Errorf("invalid id %q", s)
	}
	return int(id), nil
}

// Gids of system groups, as systemd-sysusers allocates them: from the top
// of the system range down, so they never meet the ones a distribution's
// packages take from the bottom.
const (
	firstSystemGID = 100
	lastSystemGID  = 999
)

// HasGroup reports whether the root's /etc/group names group name.
func (r *Root) HasGroup(name string) (bool, error) {
	_, err := r.LookupGroup(name)
	if err == nil {
		return true, nil
	}
	if data, exists, rerr := r.ReadFile("/etc/group"); rerr == nil && (!exists || !groupListed(data, name)) {
		return false, nil
	}
	return false, err
}

// AddSystemGroup adds a system group without members to the root's
// /etc/group (and /etc/gshadow, where the root has one), with the highest
// free gid in 100-999, as `systemd-sysusers` or `addgroup --system` would:
// each file is replaced atomically, keeping its mode and owner. It
// returns the gid. A group already there is left as it is.
func (r *Root) AddSystemGroup(name string) (int, error) {
	if name == "" || strings.ContainsAny(name, ":\n\x00 ") || isDigits(name) {
		return 0, fmt.Errorf("add group %q: invalid name", name)
	}
	data, exists, err := r.ReadFile("/etc/group")
	if err != nil {
		return 0, err
	}
	if !exists {
		return 0, fmt.Errorf("add group %s: /etc/group does not exist%s", name, r.inRoot())
	}
	if groupListed(data, name) {
		return r.LookupGroup(name)
	}
	used := map[int]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Split(line, ":"); len(f) >= 3 {
			if id, err := parseID(f[2]); err == nil {
				used[id] = true
			}
		}
	}
	gid := lastSystemGID
	for used[gid] {
		gid--
	}
	if gid < firstSystemGID {
		return 0, fmt.Errorf("add group %s: no free system gid in %d-%d in /etc/group%s", name, firstSystemGID, lastSystemGID, r.inRoot())
	}
	if err := r.appendLine("/etc/group", data, fmt.Sprintf("%s:x:%d:", name, gid)); err != nil {
		return 0, err
	}
	shadow, exists, err := r.ReadFile("/etc/gshadow")
	if err != nil || !exists || groupListed(shadow, name) {
		return gid, err
	}
	return gid, r.appendLine("/etc/gshadow", shadow, name+":!::")
}

// groupListed reports whether a group(5) or gshadow(5) file has an entry
// for name.
func groupListed(data []byte, name string) bool {
	for _, line := range strings.Split(string(data), "\n") {
		if n, _, ok := strings.Cut(line, ":"); ok && n == name {
			return true
		}
	}
	return false
}

// appendLine atomically replaces p (whose contents are data) with data
// plus line, keeping p's mode and owner.
func (r *Root) appendLine(p string, data []byte, line string) error {
	st, err := r.Lstat(p)
	if err != nil {
		return err
	}
	out := append([]byte(nil), data...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	out = append(out, line+"\n"...)
	return r.WriteFile(p, out, WriteOptions{Mode: st.Mode, UID: st.UID, GID: st.GID})
}
