package units

import (
	"bytes"
	"fmt"
	"path"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/coreos/go-systemd/v22/unit"
)

// maxLine is the longest physical line (without its newline) go-systemd's
// parser accepts; it refuses longer ones without saying where.
const maxLine = unit.SYSTEMD_LINE_MAX - 1

// LineError is a malformed line of a unit file or drop-in. Line is 1-based;
// 0 means the problem is the file as a whole.
type LineError struct {
	Line int
	Msg  string
}

func (e *LineError) Error() string {
	if e.Line == 0 {
		return e.Msg
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
}

// unitFile is a parsed unit file or drop-in.
type unitFile struct {
	sections []*unit.UnitSection
}

// parseStrict validates data as the unit file (dropin=false) or a drop-in
// of the unit name and parses it with go-systemd. go-systemd does not
// validate, so the checks here refuse what systemd would ignore with only a
// log line: assignments outside a section, lines without "=", unknown
// sections (a typo like [Serivce] silently drops the whole section), as
// well as NUL bytes, invalid UTF-8 and lines go-systemd cannot read.
func parseStrict(name string, data []byte, dropin bool) (*unitFile, error) {
	if err := validate(name, data, dropin); err != nil {
		return nil, err
	}
	return parseLenient(data)
}

// parseLenient parses with go-systemd only; for unit files nodeprov does not
// write (a distribution's), which systemd already accepts.
func parseLenient(data []byte) (*unitFile, error) {
	secs, err := unit.DeserializeSections(bytes.NewReader(data))
	if err != nil {
		return nil, &LineError{Msg: err.Error()}
	}
	return &unitFile{sections: secs}, nil
}

func validate(name string, data []byte, dropin bool) error {
	allowed := sectionsFor(unitType(name))
	lines := strings.Split(string(data), "\n")
	section, sections := "", 0
	continued := false
	for i, raw := range lines {
		n := i + 1
		raw = strings.TrimSuffix(raw, "\r")
		switch {
		case strings.IndexByte(raw, 0) >= 0:
			return &LineError{n, "contains a NUL byte"}
		case !utf8.ValidString(raw):
			return &LineError{n, "is not valid UTF-8"}
		case len(raw) > maxLine:
			return &LineError{n, fmt.Sprintf("is %d bytes long; at most %d are accepted (split it with a trailing backslash)", len(raw), maxLine)}
		}
		line := strings.TrimSpace(raw)
		if continued {
			if line != "" && strings.ContainsRune("#;", rune(line[0])) {
				// systemd skips such a line, go-systemd makes it part of
				// the value: refuse what the two would read differently.
				return &LineError{n, "comment inside a value continued with a backslash; move the comment above the assignment"}
			}
			continued = line != "" && strings.HasSuffix(line, `\`)
			continue
		}
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			if !strings.HasSuffix(line, "]") {
				return &LineError{n, fmt.Sprintf("section header %q is not closed with ]", line)}
			}
			s := line[1 : len(line)-1]
			if s == "" || strings.ContainsAny(s, "[]") {
				return &LineError{n, fmt.Sprintf("invalid section header %q", line)}
			}
			if !slices.Contains(allowed, s) && !strings.HasPrefix(s, "X-") {
				return &LineError{n, fmt.Sprintf("unknown section [%s] for a .%s unit (expected %s)", s, unitType(name), sectionList(allowed))}
			}
			section = s
			sections++
			continue
		}
		if section == "" {
			return &LineError{n, fmt.Sprintf("%q is outside of any section; put it under a section header such as [%s]", line, mainSection(allowed))}
		}
		key, _, ok := strings.Cut(line, "=")
		if !ok {
			return &LineError{n, fmt.Sprintf("missing '=' in %q (expected Key=value)", line)}
		}
		key = strings.TrimSpace(key)
		if key == "" {
			return &LineError{n, fmt.Sprintf("empty key in %q", line)}
		}
		if !validKey(key) {
			return &LineError{n, fmt.Sprintf("invalid key %q (letters, digits, - and _ only)", key)}
		}
		if section == "Install" && !slices.Contains(installKeys(), key) {
			// A typo here silently leaves the unit impossible to enable.
			return &LineError{n, fmt.Sprintf("unknown key %q in [Install] (expected %s)", key, strings.Join(installKeys(), ", "))}
		}
		continued = strings.HasSuffix(line, `\`)
	}
	if sections == 0 {
		what := "a unit file"
		if dropin {
			what = "a drop-in"
		}
		return &LineError{Msg: fmt.Sprintf("no section: %s needs at least one section header such as [%s]", what, mainSection(allowed))}
	}
	return nil
}

// installKeys are the keys systemd reads in [Install].
func installKeys() []string {
	return []string{"WantedBy", "RequiredBy", "UpheldBy", "Alias", "Also", "DefaultInstance"}
}

func validKey(k string) bool {
	for i, r := range k {
		switch {
		case r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case i > 0 && (r >= '0' && r <= '9' || r == '-' || r == '_'):
		default:
			return false
		}
	}
	return true
}

// unitType is the suffix of a unit name without the dot: "service".
func unitType(name string) string { return strings.TrimPrefix(path.Ext(name), ".") }

// sectionsFor lists the sections systemd reads in a unit of type typ: [Unit]
// and [Install], and the type's own section last.
func sectionsFor(typ string) []string {
	common := []string{"Unit", "Install"}
	switch typ {
	case "service", "socket", "mount", "automount", "swap", "timer", "path", "slice", "scope":
		return append(common, strings.ToUpper(typ[:1])+typ[1:])
	}
	return common // target, device
}

// mainSection is the section to suggest: the type's own, or [Unit].
func mainSection(allowed []string) string {
	if len(allowed) > 2 {
		return allowed[2]
	}
	return "Unit"
}

func sectionList(s []string) string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = "[" + x + "]"
	}
	return strings.Join(out, ", ")
}

// values returns the values of key in every section named section, in file
// order; a value continued over several lines is joined with spaces.
func (f *unitFile) values(section, key string) []string {
	if f == nil {
		return nil
	}
	var out []string
	for _, s := range f.sections {
		if s.Section != section {
			continue
		}
		for _, e := range s.Entries {
			if e.Name == key {
				out = append(out, joinContinued(e.Value))
			}
		}
	}
	return out
}

// last returns the last value of key in section across files (drop-ins
// override the unit file), or "".
func last(files []*unitFile, section, key string) string {
	v := ""
	for _, f := range files {
		if vs := f.values(section, key); len(vs) > 0 {
			v = vs[len(vs)-1]
		}
	}
	return v
}

// list applies systemd's list semantics to key across files: each value
// appends its words, an empty value resets the list.
func list(files []*unitFile, section, key string) []string {
	var out []string
	for _, f := range files {
		for _, v := range f.values(section, key) {
			if strings.TrimSpace(v) == "" {
				out = nil
				continue
			}
			out = append(out, v)
		}
	}
	return out
}

// joinContinued turns go-systemd's continued values ("a \\\nb") into one
// line the way systemd does.
func joinContinued(v string) string {
	if !strings.Contains(v, "\\\n") {
		return strings.TrimSpace(v)
	}
	return strings.TrimSpace(strings.ReplaceAll(v, "\\\n", " "))
}
