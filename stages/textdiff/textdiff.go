// Package textdiff renders line-based unified diffs, the format `nodeprov plan`
// uses to show how it would change a file's contents.
package textdiff

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// noNewline is the marker GNU diff prints after a line that has no
// terminating newline.
const noNewline = "\\ No newline at end of file\n"

// Unified returns a unified diff (like `diff -u`) from old to new with the given
// number of context lines, headers "--- oldName" / "+++ newName", hunks "@@ -a,b +c,d @@".
// Identical inputs return "". A missing trailing newline is marked with
// "\ No newline at end of file" like GNU diff. Binary input (contains NUL or is not valid UTF-8)
// returns a one-line summary "Binary files oldName and newName differ (N -> M bytes)".
//
// Every line of the result, the binary summary included, ends in a newline. A
// negative context is treated as zero. The diff is minimal unless the inputs are
// so far apart that finding the shortest edit script would be too expensive;
// then it is coarser, at worst replacing whole regions, but still exact.
func Unified(oldName, newName string, old, new []byte, context int) string {
	return unified(oldName, newName, old, new, context, -1)
}

// unified is Unified with an explicit work budget for the edit-script search;
// a negative budget selects the default for the input size.
func unified(oldName, newName string, old, new []byte, context, budget int) string {
	if bytes.Equal(old, new) {
		return ""
	}
	if isBinary(old) || isBinary(new) {
		return fmt.Sprintf("Binary files %s and %s differ (%d -> %d bytes)\n",
			oldName, newName, len(old), len(new))
	}
	// One string per input: lines are substrings of it, and so are the
	// map keys that intern them.
	a, b := splitLines(string(old)), splitLines(string(new))
	// More context than lines changes nothing, and keeps 2*context small.
	context = min(max(context, 0), len(a))
	if budget < 0 {
		budget = defaultBudget(len(a), len(b))
	}
	del, ins := diffLines(a, b, budget)
	cs := changes(del, ins)

	var sb strings.Builder
	sb.Grow(len(old)/4 + len(new)/4 + 64)
	sb.WriteString("--- " + oldName + "\n")
	sb.WriteString("+++ " + newName + "\n")
	for len(cs) > 0 {
		// GNU diff joins two changes into one hunk when their contexts
		// would touch or overlap: at most 2*context unchanged lines apart.
		n := 1
		for n < len(cs) && cs[n].a-cs[n-1].aEnd() <= 2*context {
			n++
		}
		writeHunk(&sb, a, b, cs[:n], context)
		cs = cs[n:]
	}
	return sb.String()
}

// isBinary reports whether data should not be shown line by line.
func isBinary(data []byte) bool {
	return bytes.IndexByte(data, 0) >= 0 || !utf8.Valid(data)
}

// splitLines splits s after each newline. The last line lacks its newline
// when s does not end in one.
func splitLines(s string) []string {
	lines := make([]string, 0, strings.Count(s, "\n")+1)
	for len(s) > 0 {
		i := strings.IndexByte(s, '\n') + 1
		if i == 0 {
			i = len(s)
		}
		lines = append(lines, s[:i])
		s = s[i:]
	}
	return lines
}

// change is a run of deleted lines a[a:a+del] replaced by inserted lines
// b[b:b+ins], with unchanged lines on both sides.
type change struct {
	a, b     int
	del, ins int
}

func (c change) aEnd() int { return c.a + c.del }

// changes groups per-line deletion and insertion marks into runs.
func changes(del, ins []bool) []change {
	var cs []change
	i, j := 0, 0
	for i < len(del) || j < len(ins) {
		if (i < len(del) && del[i]) || (j < len(ins) && ins[j]) {
			c := change{a: i, b: j}
			for i < len(del) && del[i] {
				i++
			}
			for j < len(ins) && ins[j] {
				j++
			}
			c.del, c.ins = i-c.a, j-c.b
			cs = append(cs, c)
			continue
		}
		i++
		j++
	}
	return cs
}

// writeHunk writes one hunk covering the changes cs, which are close enough
// to share context.
func writeHunk(sb *strings.Builder, a, b []string, cs []change, context int) {
	first, last := cs[0], cs[len(cs)-1]
	// Unchanged stretches have the same length on both sides, so the
	// context before and after is the same for a and b.
	before := min(context, first.a)
	after := min(context, len(a)-last.aEnd())
	a0, a1 := first.a-before, last.aEnd()+after
	b0, b1 := first.b-before, last.b+last.ins+after

	sb.WriteString("@@ -" + span(a0, a1-a0) + " +" + span(b0, b1-b0) + " @@\n")
	writeLines(sb, ' ', a[a0:first.a])
	for i, c := range cs {
		writeLines(sb, '-', a[c.a:c.aEnd()])
		writeLines(sb, '+', b[c.b:c.b+c.ins])
		if i+1 < len(cs) {
			writeLines(sb, ' ', a[c.aEnd():cs[i+1].a])
		}
	}
	writeLines(sb, ' ', a[last.aEnd():a1])
}

// span formats a hunk range of count lines starting at the 0-based index
// start. As in GNU diff, a single line omits the count and an empty range
// names the line before it.
func span(start, count int) string {
	switch count {
	case 0:
		return strconv.Itoa(start) + ",0"
	case 1:
		return strconv.Itoa(start + 1)
	}
	return strconv.Itoa(start+1) + "," + strconv.Itoa(count)
}

// writeLines writes lines, each prefixed by op.
func writeLines(sb *strings.Builder, op byte, lines []string) {
	for _, l := range lines {
		sb.WriteByte(op)
		sb.WriteString(l)
		if len(l) == 0 || l[len(l)-1] != '\n' {
			sb.WriteString("\n" + noNewline)
		}
	}
}
