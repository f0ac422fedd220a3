package archive

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
)

// maxNameLen is the longest member name accepted. Release archives use
// short names; the bound keeps the per-entry bookkeeping small.
const maxNameLen = 1024

// maxStrip bounds Selection.Strip.
const maxStrip = 64

// cleanName checks a member name and returns it cleaned: without a leading
// "./", repeated slashes or a trailing slash. "." is the archive's root.
func cleanName(name string) (string, error) {
	switch {
	case name == "":
		return "", errors.New("empty name")
	case strings.IndexByte(name, 0) >= 0:
		return "", errors.New("name contains a NUL byte")
	case len(name) > maxNameLen:
		return "", fmt.Errorf("name is longer than %d bytes", maxNameLen)
	case strings.HasPrefix(name, "/"):
		return "", errors.New("absolute path")
	}
	for c := range strings.SplitSeq(name, "/") {
		if c == ".." {
			return "", errors.New(`path has a ".." component`)
		}
	}
	return path.Clean(name), nil
}

// cleanTarget checks an absolute in-root path from the selection.
func cleanTarget(p string) (string, error) {
	switch {
	case p == "":
		return "", errors.New("empty target path")
	case strings.IndexByte(p, 0) >= 0:
		return "", fmt.Errorf("target path %q contains a NUL byte", p)
	case !path.IsAbs(p):
		return "", fmt.Errorf("target path %q is not absolute", p)
	}
	return path.Clean(p), nil
}

// selector is a checked, normalised Selection.
type selector struct {
	files   map[string]string // Files mode: cleaned member name -> target
	to      string            // To mode: cleaned directory
	include map[string]bool   // To mode: cleaned paths after strip; nil = all
	strip   int
}

func newSelector(sel Selection) (*selector, error) {
	switch {
	case len(sel.Files) > 0 && sel.To != "":
		return nil, &Error{Reason: "invalid selection: set Files or To, not both"}
	case len(sel.Files) == 0 && sel.To == "":
		return nil, &Error{Reason: "invalid selection: set Files (member to target) or To (a directory)"}
	case len(sel.Files) > 0:
		return newFilesSelector(sel)
	}
	if sel.Strip < 0 || sel.Strip > maxStrip {
		return nil, &Error{Reason: fmt.Sprintf("invalid selection: strip %d is not between 0 and %d", sel.Strip, maxStrip)}
	}
	to, err := cleanTarget(sel.To)
	if err != nil {
		return nil, &Error{Reason: "invalid selection", Err: err}
	}
	s := &selector{to: to, strip: sel.Strip}
	if len(sel.Include) > 0 {
		s.include = make(map[string]bool, len(sel.Include))
		for _, inc := range sel.Include {
			name, err := selectedName(inc)
			if err != nil {
				return nil, err
			}
			s.include[name] = true
		}
	}
	return s, nil
}

func newFilesSelector(sel Selection) (*selector, error) {
	if sel.Strip != 0 || len(sel.Include) > 0 {
		return nil, &Error{Reason: "invalid selection: Include and Strip apply to To, not to Files"}
	}
	s := &selector{files: make(map[string]string, len(sel.Files))}
	owner := make(map[string]string, len(sel.Files)) // target -> member
	for _, raw := range slices.Sorted(maps.Keys(sel.Files)) {
		name, err := selectedName(raw)
		if err != nil {
			return nil, err
		}
		if _, dup := s.files[name]; dup {
			return nil, &Error{Member: name, Reason: "invalid selection: member listed twice"}
		}
		target, err := cleanTarget(sel.Files[raw])
		if err != nil {
			return nil, &Error{Member: name, Reason: "invalid selection", Err: err}
		}
		if target == "/" {
			return nil, &Error{Member: name, Reason: `invalid selection: target is the root directory "/"`}
		}
		if other, dup := owner[target]; dup {
			return nil, &Error{Member: name, Reason: fmt.Sprintf("invalid selection: %q is also installed at %s", other, target)}
		}
		s.files[name] = target
		owner[target] = name
	}
	for target, name := range owner {
		for p := path.Dir(target); p != "/"; p = path.Dir(p) {
			if other, ok := owner[p]; ok {
				return nil, &Error{Member: name, Reason: fmt.Sprintf("invalid selection: target %s is inside %s, the target of %q", target, p, other)}
			}
		}
	}
	return s, nil
}

// selectedName checks and cleans a member name given in the selection.
func selectedName(raw string) (string, error) {
	name, err := cleanName(raw)
	if err != nil {
		return "", &Error{Member: raw, Reason: "invalid selection", Err: err}
	}
	if name == "." {
		return "", &Error{Member: raw, Reason: "invalid selection: names the archive root, not a file"}
	}
	return name, nil
}

// match reports whether the cleaned member name is selected, with its
// target and the selection key that it satisfies (the name in Files mode,
// the stripped path in To mode).
func (s *selector) match(name string) (target, key string, ok bool) {
	if s.files != nil {
		target, ok = s.files[name]
		return target, name, ok
	}
	if name == "." {
		return "", "", false
	}
	rel := name
	for range s.strip {
		_, rest, found := strings.Cut(rel, "/")
		if !found {
			return "", "", false
		}
		rel = rest
	}
	if s.include != nil && !s.include[rel] {
		return "", "", false
	}
	return path.Join(s.to, rel), rel, true
}

// within reports whether target is strictly inside dir; both are clean and
// absolute.
func within(target, dir string) bool {
	if dir == "/" {
		return target != "/" && strings.HasPrefix(target, "/")
	}
	return strings.HasPrefix(target, dir+"/")
}

// keys returns every key the selection requires to be found, sorted.
func (s *selector) keys() []string {
	if s.files != nil {
		return slices.Sorted(maps.Keys(s.files))
	}
	return slices.Sorted(maps.Keys(s.include))
}

// describeKey names a selection key in messages.
func (s *selector) describeKey(key string) string {
	if s.files != nil {
		return fmt.Sprintf("%q (for %s)", key, s.files[key])
	}
	return fmt.Sprintf("%q", key)
}
