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
