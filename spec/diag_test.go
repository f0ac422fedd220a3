package spec

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestHostileValuesGiveShortErrors: a huge value, key or path is reported
// in a few KiB, not echoed whole, and the caret still points at the column.
func TestHostileValuesGiveShortErrors(t *testing.T) {
	huge := strings.Repeat("a", 4<<20)
	tests := []struct {
		name, src, want string
	}{
		{"huge scalar", header + "metadata: {name: " + huge + "}\n", "metadata.name: invalid name"},
		{"huge key", header + "kernel:\n  sysctl:\n    " + huge + ": \"1\"\n", "5:1: YAML syntax"},
		{"huge path", header + "files:\n  - {path: /" + strings.Repeat("p", 1<<20) + ", contents: x}\n", "files[0].path: path is too long: 1048577 bytes"},
		{"long component", header + "files:\n  - {path: /etc/" + strings.Repeat("n", 300) + ", contents: x}\n", "is too long: 300 bytes; Linux allows at most 255"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load("t.yaml", []byte(tt.src))
			var ds *Diagnostics
			if !errors.As(err, &ds) {
				t.Fatalf("got %v, want diagnostics", err)
			}
			out := ds.Pretty()
			if !strings.Contains(out, tt.want) {
				t.Errorf("output lacks %q:\n%.2000s", tt.want, out)
			}
			if len(out) > 8<<10 {
				t.Errorf("output is %d bytes; want a few KiB", len(out))
			}
			if !utf8.ValidString(out) {
				t.Error("output is not valid UTF-8")
			}
		})
	}
}

func TestWindowKeepsCaretOnColumn(t *testing.T) {
	line := strings.Repeat("x", 1000) + "ERR" + strings.Repeat("y", 1000)
	got, col := window(line, 1001)
	if r := []rune(got); string(r[col-1:col+2]) != "ERR" {
		t.Errorf("column %d of the window is %q, want ERR", col, string(r[col-1:col+2]))
	}
	if n := utf8.RuneCountInString(got); n > maxLineShown+2 {
		t.Errorf("window has %d runes", n)
	}
	short, c := window("abc", 2)
	if short != "abc" || c != 2 {
		t.Errorf("short line changed: %q %d", short, c)
	}
}

func TestElide(t *testing.T) {
	s := strings.Repeat("é", 1000) // 2 bytes each
	got := elide(s, 100)
	if len(got) > 140 || !utf8.ValidString(got) || !strings.Contains(got, "bytes]") {
		t.Errorf("elide gave %d bytes: %q", len(got), got)
	}
	if elide("short", 100) != "short" {
		t.Error("short string changed")
	}
}
