package textdiff

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// numbered returns lines "from\n" ... "to\n", with line i replaced by
// repl[i] when present.
func numbered(from, to int, repl map[int]string) string {
	var sb strings.Builder
	for i := from; i <= to; i++ {
		if s, ok := repl[i]; ok {
			sb.WriteString(s)
		} else {
			sb.WriteString(strconv.Itoa(i) + "\n")
		}
	}
	return sb.String()
}

type unifiedCase struct {
	name     string
	old, new string
	context  int
	want     string
	binary   bool // no GNU diff comparison
}

var unifiedCases = []unifiedCase{
	{
		name: "identical",
		old:  "a\nb\n", new: "a\nb\n", context: 3,
		want: "",
	},
	{
		name: "identical empty",
		old:  "", new: "", context: 3,
		want: "",
	},
	{
		name: "insert at start",
		old:  "a\nb\nc\n", new: "x\na\nb\nc\n", context: 3,
		want: "--- old\n+++ new\n@@ -1,3 +1,4 @@\n+x\n a\n b\n c\n",
	},
	{
		name: "insert in middle",
		old:  numbered(1, 10, nil), new: numbered(1, 10, map[int]string{5: "5\nnew\n"}), context: 2,
		want: "--- old\n+++ new\n@@ -4,4 +4,5 @@\n 4\n 5\n+new\n 6\n 7\n",
	},
	{
		name: "insert at end",
		old:  "a\nb\nc\nd\n", new: "a\nb\nc\nd\ne\nf\n", context: 3,
		want: "--- old\n+++ new\n@@ -2,3 +2,5 @@\n b\n c\n d\n+e\n+f\n",
	},
	{
		name: "insert without context",
		old:  "a\nb\nc\n", new: "a\nX\nb\nc\n", context: 0,
		want: "--- old\n+++ new\n@@ -1,0 +2 @@\n+X\n",
	},
	{
		name: "insert at start without context",
		old:  "a\nb\n", new: "X\na\nb\n", context: 0,
		want: "--- old\n+++ new\n@@ -0,0 +1 @@\n+X\n",
	},
	{
		name: "delete",
		old:  numbered(1, 10, nil), new: numbered(1, 10, map[int]string{4: "", 5: ""}), context: 3,
		want: "--- old\n+++ new\n@@ -1,8 +1,6 @@\n 1\n 2\n 3\n-4\n-5\n 6\n 7\n 8\n",
	},
	{
		name: "delete without context",
		old:  "a\nb\nc\n", new: "a\nc\n", context: 0,
		want: "--- old\n+++ new\n@@ -2 +1,0 @@\n-b\n",
	},
	{
		name: "change",
		old:  "a\nb\nc\n", new: "a\nB\nc\n", context: 1,
		want: "--- old\n+++ new\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n",
	},
	{
		name: "change single line file",
		old:  "a\n", new: "b\n", context: 3,
		want: "--- old\n+++ new\n@@ -1 +1 @@\n-a\n+b\n",
	},
	{
		name: "negative context is zero",
		old:  "a\nb\nc\n", new: "a\nB\nc\n", context: -5,
		want: "--- old\n+++ new\n@@ -2 +2 @@\n-b\n+B\n",
	},
	{
		name: "huge context",
		old:  "a\nb\nc\n", new: "a\nB\nc\n", context: math.MaxInt,
		want: "--- old\n+++ new\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n",
	},
	{
		name:    "hunks merged when contexts touch",
		old:     numbered(1, 12, nil),
		new:     numbered(1, 12, map[int]string{2: "two\n", 9: "nine\n"}),
		context: 3,
		want:    "--- old\n+++ new\n@@ -1,12 +1,12 @@\n 1\n-2\n+two\n 3\n 4\n 5\n 6\n 7\n 8\n-9\n+nine\n 10\n 11\n 12\n",
	},
	{
		name:    "separate hunks",
		old:     numbered(1, 12, nil),
		new:     numbered(1, 12, map[int]string{2: "two\n", 10: "ten\n"}),
		context: 3,
		want: "--- old\n+++ new\n" +
			"@@ -1,5 +1,5 @@\n 1\n-2\n+two\n 3\n 4\n 5\n" +
			"@@ -7,6 +7,6 @@\n 7\n 8\n 9\n-10\n+ten\n 11\n 12\n",
	},
	{
		name:    "separate hunks with insert and delete",
		old:     numbered(1, 20, nil),
		new:     numbered(1, 20, map[int]string{3: "3\nthree-and-a-half\n", 15: "", 16: ""}),
		context: 2,
		want: "--- old\n+++ new\n" +
			"@@ -2,4 +2,5 @@\n 2\n 3\n+three-and-a-half\n 4\n 5\n" +
			"@@ -13,6 +14,4 @@\n 13\n 14\n-15\n-16\n 17\n 18\n",
	},
	{
		name: "new file",
		old:  "", new: "a\nb\n", context: 3,
		want: "--- old\n+++ new\n@@ -0,0 +1,2 @@\n+a\n+b\n",
	},
	{
		name: "new file of one line",
		old:  "", new: "a\n", context: 3,
		want: "--- old\n+++ new\n@@ -0,0 +1 @@\n+a\n",
	},
	{
		name: "emptied file",
		old:  "a\nb\nc\n", new: "", context: 3,
		want: "--- old\n+++ new\n@@ -1,3 +0,0 @@\n-a\n-b\n-c\n",
	},
	{
		name: "old lacks trailing newline",
		old:  "a\nb", new: "a\nb\n", context: 3,
		want: "--- old\n+++ new\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n",
	},
	{
		name: "new lacks trailing newline",
		old:  "a\nb\n", new: "a\nb", context: 3,
		want: "--- old\n+++ new\n@@ -1,2 +1,2 @@\n a\n-b\n+b\n\\ No newline at end of file\n",
	},
	{
		name: "both lack trailing newline, last line changed",
		old:  "a\nb", new: "a\nc", context: 3,
		want: "--- old\n+++ new\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n",
	},
	{
		name: "both lack trailing newline, last line is context",
		old:  "a\nb\nc", new: "a\nB\nc", context: 3,
		want: "--- old\n+++ new\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n\\ No newline at end of file\n",
	},
	{
		name: "new file without trailing newline",
		old:  "", new: "a", context: 3,
		want: "--- old\n+++ new\n@@ -0,0 +1 @@\n+a\n\\ No newline at end of file\n",
	},
	{
		name: "binary with NUL",
		old:  "a\x00b", new: "a\x00c\n", context: 3,
		want:   "Binary files old and new differ (3 -> 4 bytes)\n",
		binary: true,
	},
	{
		name: "binary with invalid UTF-8",
		old:  "text\n", new: "text\xff\n", context: 3,
		want:   "Binary files old and new differ (5 -> 6 bytes)\n",
		binary: true,
	},
	{
		name: "identical binary",
		old:  "\x00\x01", new: "\x00\x01", context: 3,
		want:   "",
		binary: true,
	},
}

func TestUnified(t *testing.T) {
	for _, tc := range unifiedCases {
		t.Run(tc.name, func(t *testing.T) {
			got := Unified("old", "new", []byte(tc.old), []byte(tc.new), tc.context)
			if got != tc.want {
				t.Errorf("Unified(%q, %q, %d):\ngot:\n%s\nwant:\n%s", tc.old, tc.new, tc.context, got, tc.want)
			}
		})
	}
}

func TestSpan(t *testing.T) {
	tests := []struct {
		start, count int
		want         string
	}{
		{0, 0, "0,0"},
		{3, 0, "3,0"},
		{0, 1, "1"},
		{4, 1, "5"},
		{0, 2, "1,2"},
		{9, 12, "10,12"},
	}
	for _, tt := range tests {
		if got := span(tt.start, tt.count); got != tt.want {
			t.Errorf("span(%d, %d) = %q, want %q", tt.start, tt.count, got, tt.want)
		}
	}
}

func TestSplitLines(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"\n", []string{"\n"}},
		{"a", []string{"a"}},
		{"a\nb", []string{"a\n", "b"}},
		{"a\n\nb\n", []string{"a\n", "\n", "b\n"}},
	}
	for _, tt := range tests {
		if got := splitLines(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("splitLines(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
