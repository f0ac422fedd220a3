package spec

import (
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// Pos is a 1-based position in a spec file; File names the file when a
// layered spec has several (empty: the document's own file).
type Pos struct {
	Line   int    `json:"line"`
	Column int    `json:"column"`
	File   string `json:"file,omitempty"`
}

// Diagnostic is one problem found in a spec.
type Diagnostic struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
}

// String formats a diagnostic as file:line:col: path: message.
func (d Diagnostic) String() string {
	var b strings.Builder
	b.WriteString(d.File)
	if d.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", d.Line, d.Column)
	}
	b.WriteString(": ")
	if d.Path != "" {
		b.WriteString(d.Path)
		b.WriteString(": ")
	}
	b.WriteString(d.Message)
	return b.String()
}

// Diagnostics is every problem found in one spec file; it is the error type
// returned by Load.
type Diagnostics struct {
	Items  []Diagnostic
	source []byte
	// sources are the files of a layered spec, by name.
	sources map[string][]byte
}

func (ds *Diagnostics) Error() string {
	lines := make([]string, len(ds.Items))
	for i, d := range ds.Items {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// Pretty formats each diagnostic followed by the offending source line and a
// caret under the column, the way compilers do.
func (ds *Diagnostics) Pretty() string {
	var b strings.Builder
	for i, d := range ds.Items {
		text := ds.source
		if s, ok := ds.sources[d.File]; ok {
			text = s
		}
		src := strings.Split(string(text), "\n")
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(d.String())
		b.WriteByte('\n')
		if d.Line < 1 || d.Line > len(src) {
			continue
		}
		// The quoted line goes through Redact like the message: the
		// caret may point at a URL with credentials or a password.
		line, col := window(redactLine(strings.TrimRight(src[d.Line-1], "\r"), d.Column))
		gutter := fmt.Sprintf("%5d | ", d.Line)
		fmt.Fprintf(&b, "%s%s\n", gutter, line)
		fmt.Fprintf(&b, "%s| %s^\n", strings.Repeat(" ", len(gutter)-2), caretPad(line, col))
	}
	return b.String()
}

// redactLine redacts a source line and returns the caret's column (1-based,
// in runes) in the redacted line.
func redactLine(line string, col int) (string, int) {
	off := len(line)
	if r := []rune(line); col-1 < len(r) {
		off = len(string(r[:max(col-1, 0)]))
	}
	out, moved := redactAt(line, off)
	return out, utf8.RuneCountInString(out[:moved]) + 1
}

// window returns at most maxLineShown runes of line around column col
// (1-based, in runes), with "…" where it was cut, and the column within
// the result.
func window(line string, col int) (string, int) {
	r := []rune(line)
	if len(r) <= maxLineShown {
		return line, col
	}
	start := max(0, min(col-1-maxLineShown/2, len(r)-maxLineShown))
	end := min(len(r), start+maxLineShown)
	out := string(r[start:end])
	if end < len(r) {
		out += "…"
	}
	if start > 0 {
		return "…" + out, col - start + 1
	}
	return out, col
}

// caretPad returns the whitespace that puts a caret under column col of line,
// keeping tabs so the caret lines up in a terminal.
func caretPad(line string, col int) string {
	var b strings.Builder
	for i, r := range []rune(line) {
		if i >= col-1 {
			break
		}
		if r == '\t' {
			b.WriteByte('\t')
		} else {
			b.WriteByte(' ')
		}
	}
	return b.String()
}

// diagSink collects diagnostics while decoding and validating one file.
type diagSink struct {
	file  string
	items []Diagnostic
	// order ranks the files of a layered spec (base first) for sorting.
	order map[string]int
	// failed holds key paths whose value did not decode; validation stays
	// quiet about them (and what is below them) to avoid knock-on errors.
	failed map[string]bool
}

// addDecode records a decoding problem and marks path as failed.
func (s *diagSink) addDecode(p Pos, path, format string, args ...any) {
	if s.failed == nil {
		s.failed = map[string]bool{}
	}
	s.failed[path] = true
	s.add(p, path, format, args...)
}

// add records a diagnostic. Its message goes through Redact: a message
// that quotes a value (an unparseable proxy URL, a TOML error) never
// carries the secret in it.
func (s *diagSink) add(p Pos, path, format string, args ...any) {
	file := s.file
	if p.File != "" {
		file = p.File
	}
	s.items = append(s.items, Diagnostic{
		File: file, Line: p.Line, Column: p.Column, Path: elide(path, maxPathShown),
		Message: elide(Redact(fmt.Sprintf(format, args...)), maxMessage),
	})
}

// A hostile spec must not turn into megabytes of error output: key paths,
// messages (which quote values) and source lines are shortened to these
// many bytes, keeping both ends.
const (
	maxPathShown = 256
	maxMessage   = 1024
	maxLineShown = 160 // runes of a source line around the column
)

// elide shortens s to about max bytes, keeping its head and tail and
// saying how much was left out. Cuts fall on UTF-8 boundaries.
func elide(s string, max int) string {
	if len(s) <= max {
		return s
	}
	head, tail := max*2/3, max/3
	for head > 0 && !utf8.RuneStart(s[head]) {
		head--
	}
	t := len(s) - tail
	for t < len(s) && !utf8.RuneStart(s[t]) {
		t++
	}
	return fmt.Sprintf("%s…[%d bytes]…%s", s[:head], t-head, s[t:])
}

// addValidation records a validation problem unless decoding already
// reported one at path or at an enclosing key.
func (s *diagSink) addValidation(p Pos, path, format string, args ...any) {
	for q := path; ; {
		if s.failed[q] && q != "" {
			return
		}
		i := strings.LastIndexAny(q, ".[")
		if i <= 0 {
			break
		}
		q = q[:i]
	}
	s.add(p, path, format, args...)
}

// result returns the collected diagnostics sorted by position, or nil.
func (s *diagSink) result(src []byte) error {
	if len(s.items) == 0 {
		return nil
	}
	items := append([]Diagnostic(nil), s.items...)
	sort.SliceStable(items, func(i, j int) bool {
		if fi, fj := s.order[items[i].File], s.order[items[j].File]; fi != fj {
			return fi < fj
		}
		if items[i].Line != items[j].Line {
			return items[i].Line < items[j].Line
		}
		return items[i].Column < items[j].Column
	})
	return &Diagnostics{Items: items, source: src}
}
