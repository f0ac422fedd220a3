package textdiff

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// applyUnified applies a diff produced by Unified to old, checking every
// context and deleted line, every hunk header and the hunk order.
func applyUnified(old []byte, diff string) ([]byte, error) {
	if diff == "" {
		return old, nil
	}
	if !strings.HasSuffix(diff, "\n") {
		return nil, errors.New("diff does not end in a newline")
	}
	lines := strings.SplitAfter(diff, "\n")
	lines = lines[:len(lines)-1]
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "--- ") || !strings.HasPrefix(lines[1], "+++ ") {
		return nil, errors.New("missing --- / +++ headers")
	}
	src := strings.SplitAfter(string(old), "\n")
	if src[len(src)-1] == "" {
		src = src[:len(src)-1]
	}

	var out []string
	pos := 0 // next line of src
	i := 2
	for i < len(lines) {
		oldStart, oldCount, newStart, newCount, err := parseHunkHeader(lines[i])
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", i+1, err)
		}
		i++
		if oldStart < pos || oldStart > len(src) {
			return nil, fmt.Errorf("hunk at old line %d overlaps or is out of range", oldStart)
		}
		out = append(out, src[pos:oldStart]...)
		pos = oldStart
		if len(out) != newStart {
			return nil, fmt.Errorf("hunk claims new line %d, applier is at %d", newStart, len(out))
		}
		seenOld, seenNew := 0, 0
		for i < len(lines) && !strings.HasPrefix(lines[i], "@@ ") {
			op, text := lines[i][0], lines[i][1:]
			i++
			if i < len(lines) && lines[i] == noNewline {
				text = strings.TrimSuffix(text, "\n")
				i++
			}
			if op == ' ' || op == '-' {
				if pos >= len(src) || src[pos] != text {
					return nil, fmt.Errorf("old line %d is not %q", pos+1, text)
				}
				pos++
				seenOld++
			}
			switch op {
			case ' ', '+':
				out = append(out, text)
				seenNew++
			case '-':
			default:
				return nil, fmt.Errorf("bad hunk line %q", lines[i-1])
			}
		}
		if seenOld != oldCount || seenNew != newCount {
			return nil, fmt.Errorf("hunk counts -%d +%d, header says -%d +%d", seenOld, seenNew, oldCount, newCount)
		}
	}
	out = append(out, src[pos:]...)
	return []byte(strings.Join(out, "")), nil
}

// parseHunkHeader parses "@@ -a[,b] +c[,d] @@" into 0-based starts and counts.
func parseHunkHeader(line string) (oldStart, oldCount, newStart, newCount int, err error) {
	f := strings.Fields(line)
	if len(f) != 4 || f[0] != "@@" || f[3] != "@@" || f[1][0] != '-' || f[2][0] != '+' {
		return 0, 0, 0, 0, fmt.Errorf("bad hunk header %q", line)
	}
	parse := func(s string) (start, count int, err error) {
		first, rest, hasCount := strings.Cut(s, ",")
		if start, err = strconv.Atoi(first); err != nil {
			return 0, 0, err
		}
		count = 1
		if hasCount {
			if count, err = strconv.Atoi(rest); err != nil {
				return 0, 0, err
			}
			if count == 1 {
				return 0, 0, errors.New("count 1 must be omitted")
			}
		}
		if count > 0 {
			start-- // 1-based first line; an empty range names the line before
		}
		return start, count, nil
	}
	if oldStart, oldCount, err = parse(f[1][1:]); err != nil {
		return
	}
	newStart, newCount, err = parse(f[2][1:])
	return
}

// lineGen makes lines for random files: unique ones, or ones drawn from a
// small alphabet so that files are full of repeated lines.
type lineGen struct {
	rng    *rand.Rand
	unique bool
	next   int
}

func (g *lineGen) line() string {
	if g.unique {
		g.next++
		return "line " + strconv.Itoa(g.next)
	}
	return []string{"", "{", "}", "a", "b", "return nil", "\tx++"}[g.rng.Intn(7)]
}

func (g *lineGen) file(n int) []string {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = g.line()
	}
	return lines
}

// edit applies a few random insertions, deletions and replacements of runs
// of lines.
func (g *lineGen) edit(lines []string, edits int) []string {
	out := slices.Clone(lines)
	for range edits {
		pos := g.rng.Intn(len(out) + 1)
		n := 1 + g.rng.Intn(4)
		end := min(pos+n, len(out))
		switch g.rng.Intn(3) {
		case 0:
			out = slices.Insert(out, pos, g.file(n)...)
		case 1:
			out = slices.Delete(out, pos, end)
		case 2:
			out = slices.Replace(out, pos, end, g.file(n)...)
		}
	}
	return out
}

// join makes file contents from lines, dropping the final newline when
// noEOL is set.
func join(lines []string, noEOL bool) []byte {
	s := ""
	if len(lines) > 0 {
		s = strings.Join(lines, "\n") + "\n"
	}
	if noEOL {
		s = strings.TrimSuffix(s, "\n")
	}
	return []byte(s)
}

// randomPair returns an old file and an edited new one.
func randomPair(seed int64, unique bool, size, edits int) (old, new []byte) {
	rng := rand.New(rand.NewSource(seed))
	g := &lineGen{rng: rng, unique: unique}
	a := g.file(rng.Intn(size + 1))
	b := g.edit(a, rng.Intn(edits+1))
	return join(a, rng.Intn(4) == 0), join(b, rng.Intn(4) == 0)
}

// lcsLen returns the length of a longest common subsequence of the lines of
// a and b, by dynamic programming.
func lcsLen(a, b []byte) int {
	x, y := splitLines(string(a)), splitLines(string(b))
	prev := make([]int, len(y)+1)
	cur := make([]int, len(y)+1)
	for i := range x {
		for j := range y {
			if x[i] == y[j] {
				cur[j+1] = prev[j] + 1
			} else {
				cur[j+1] = max(prev[j+1], cur[j])
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(y)]
}

// countChanges returns the number of deleted and inserted lines in diff.
func countChanges(diff string) (del, ins int) {
	for l := range strings.Lines(diff) {
		switch {
		case strings.HasPrefix(l, "--- "), strings.HasPrefix(l, "+++ "):
		case strings.HasPrefix(l, "-"):
			del++
		case strings.HasPrefix(l, "+"):
			ins++
		}
	}
	return del, ins
}

func TestUnifiedRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		unique bool
		size   int
		edits  int
		seeds  int
	}{
		{"small repetitive", false, 12, 4, 400},
		{"repetitive", false, 150, 10, 200},
		{"unique", true, 150, 10, 200},
		{"heavily edited", false, 60, 40, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for seed := int64(1); seed <= int64(tt.seeds); seed++ {
				old, new := randomPair(seed, tt.unique, tt.size, tt.edits)
				for _, context := range []int{0, 1, 3} {
					diff := Unified("a", "b", old, new, context)
					if (diff == "") != bytes.Equal(old, new) {
						t.Fatalf("seed %d: empty diff %v for equal inputs %v", seed, diff == "", bytes.Equal(old, new))
					}
					got, err := applyUnified(old, diff)
					if err != nil {
						t.Fatalf("seed %d context %d: %v\nold:\n%s\nnew:\n%s\ndiff:\n%s", seed, context, err, old, new, diff)
					}
					if !bytes.Equal(got, new) {
						t.Fatalf("seed %d context %d: patched old is\n%q\nwant\n%q\ndiff:\n%s", seed, context, got, new, diff)
					}
					// The edit script must be minimal.
					del, ins := countChanges(diff)
					l := lcsLen(old, new)
					if wantDel, wantIns := len(splitLines(string(old)))-l, len(splitLines(string(new)))-l; del != wantDel || ins != wantIns {
						t.Fatalf("seed %d: diff has -%d +%d lines, minimum is -%d +%d\n%s", seed, del, ins, wantDel, wantIns, diff)
					}
				}
			}
		})
	}
}

// TestUnifiedBudget checks that running out of search budget still yields a
// diff that applies, only a coarser one.
func TestUnifiedBudget(t *testing.T) {
	for _, budget := range []int{0, 10, 100, 1000} {
		for seed := int64(1); seed <= 100; seed++ {
			old, new := randomPair(seed, false, 100, 20)
			diff := unified("a", "b", old, new, 2, budget)
			got, err := applyUnified(old, diff)
			if err != nil {
				t.Fatalf("budget %d seed %d: %v\ndiff:\n%s", budget, seed, err, diff)
			}
			if !bytes.Equal(got, new) {
				t.Fatalf("budget %d seed %d: patched old is\n%q\nwant\n%q", budget, seed, got, new)
			}
		}
	}
}

// TestUnifiedLargeUnrelated diffs two big unrelated files made of the same
// few lines, whose edit distance is in the thousands.
func TestUnifiedLargeUnrelated(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	g := &lineGen{rng: rng}
	old, new := join(g.file(10000), false), join(g.file(10000), false)
	diff := Unified("a", "b", old, new, 3)
	got, err := applyUnified(old, diff)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, new) {
		t.Fatal("patched old differs from new")
	}
}

// gnuDiff returns the path of GNU diff, skipping the test if there is none.
func gnuDiff(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("diff")
	if err != nil {
		t.Skip("GNU diff is not on PATH; skipping comparison with diff -u")
	}
	out, err := exec.Command(path, "--version").Output()
	if err != nil || !bytes.Contains(out, []byte("GNU diffutils")) {
		t.Skip("diff on PATH is not GNU diffutils; skipping comparison with diff -u")
	}
	return path
}

// runDiff runs GNU diff on old and new with the given extra arguments.
func runDiff(t *testing.T, diffPath string, old, new []byte, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	oldPath, newPath := filepath.Join(dir, "old"), filepath.Join(dir, "new")
	if err := os.WriteFile(oldPath, old, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(newPath, new, 0o644); err != nil {
		t.Fatal(err)
	}
	args = append(args, "--label", "old", "--label", "new", oldPath, newPath)
	out, err := exec.Command(diffPath, args...).Output()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
		t.Fatalf("diff %v: %v", args, err)
	}
	return string(out)
}

// hunkHeaders returns the "@@" lines of a diff.
func hunkHeaders(diff string) []string {
	var hs []string
	for l := range strings.Lines(diff) {
		if strings.HasPrefix(l, "@@ ") {
			hs = append(hs, strings.TrimSuffix(l, "\n"))
		}
	}
	return hs
}

func TestUnifiedMatchesGNUDiff(t *testing.T) {
	diffPath := gnuDiff(t)

	t.Run("table", func(t *testing.T) {
		for _, tc := range unifiedCases {
			if tc.binary {
				continue
			}
			context := min(max(tc.context, 0), 1000)
			want := runDiff(t, diffPath, []byte(tc.old), []byte(tc.new), "-U", strconv.Itoa(context))
			if tc.want != want {
				t.Errorf("%s: expected output differs from diff -u:\n%s", tc.name, want)
			}
		}
	})

	// With unique lines the longest common subsequence is unique, so GNU
	// diff and Unified must agree byte for byte, hunk headers included.
	t.Run("unique lines", func(t *testing.T) {
		for seed := int64(1); seed <= 30; seed++ {
			old, new := randomPair(seed, true, 200, 12)
			context := int(seed % 4)
			want := runDiff(t, diffPath, old, new, "-U", strconv.Itoa(context))
			got := Unified("old", "new", old, new, context)
			if !slices.Equal(hunkHeaders(got), hunkHeaders(want)) {
				t.Errorf("seed %d: hunks\n%q\ndiff -u hunks\n%q", seed, hunkHeaders(got), hunkHeaders(want))
			} else if got != want {
				t.Errorf("seed %d: output differs from diff -u\ngot:\n%s\nwant:\n%s", seed, got, want)
			}
		}
	})

	// With repeated lines several shortest scripts may exist; both must
	// still change the same number of lines.
	t.Run("repeated lines", func(t *testing.T) {
		for seed := int64(1); seed <= 30; seed++ {
			old, new := randomPair(seed, false, 200, 12)
			want := runDiff(t, diffPath, old, new, "--minimal", "-U", "3")
			got := Unified("old", "new", old, new, 3)
			gotDel, gotIns := countChanges(got)
			wantDel, wantIns := countChanges(want)
			if gotDel != wantDel || gotIns != wantIns {
				t.Errorf("seed %d: -%d +%d lines, diff --minimal -u has -%d +%d", seed, gotDel, gotIns, wantDel, wantIns)
			}
		}
	})
}

// benchFile returns a 10k-line file and a copy with 50 scattered changes.
func benchFile() (old, new []byte) {
	rng := rand.New(rand.NewSource(42))
	lines := make([]string, 10000)
	for i := range lines {
		switch i % 7 {
		case 0:
			lines[i] = ""
		case 6:
			lines[i] = "}"
		default:
			lines[i] = fmt.Sprintf("\tsetting_%d = %d", i, rng.Intn(1000))
		}
	}
	edited := slices.Clone(lines)
	for c := range 50 {
		pos := rng.Intn(len(edited))
		switch c % 3 {
		case 0:
			edited[pos] = fmt.Sprintf("\tchanged_%d = true", c)
		case 1:
			edited = slices.Insert(edited, pos, fmt.Sprintf("\tadded_%d = 1", c), "")
		case 2:
			edited = slices.Delete(edited, pos, pos+1)
		}
	}
	return join(lines, false), join(edited, false)
}

func BenchmarkUnified10kLines50Changes(b *testing.B) {
	old, new := benchFile()
	b.SetBytes(int64(len(old) + len(new)))
	for b.Loop() {
		Unified("old", "new", old, new, 3)
	}
}

// BenchmarkUnifiedUnrelated measures the worst case: two unrelated 10k-line
// files built from the same few lines.
func BenchmarkUnifiedUnrelated(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	g := &lineGen{rng: rng}
	old, new := join(g.file(10000), false), join(g.file(10000), false)
	b.SetBytes(int64(len(old) + len(new)))
	for b.Loop() {
		Unified("old", "new", old, new, 3)
	}
}
