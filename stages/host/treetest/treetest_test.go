package treetest

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestSnapshotAndDiff: Write lays out files, directories and links;
// Snapshot sees each with its type, mode, size, digest and target; Diff
// names every path that was added, removed or changed, and nothing else.
func TestSnapshotAndDiff(t *testing.T) {
	dir := t.TempDir()
	Write(t, dir, map[string]string{
		"etc/a.conf":        "a",
		"etc/empty.d/":      "",
		"usr/bin/tool":      "tool v1",
		"usr/sbin/tool-ln":  "-> ../bin/tool",
		"var/lib/state.txt": "state",
	})
	before := Take(t, dir)
	for p, want := range map[string]string{"etc/empty.d": "dir", "usr/sbin/tool-ln": "symlink", "etc/a.conf": "file"} {
		if before[p].Type != want {
			t.Errorf("%s is %q, want %q", p, before[p].Type, want)
		}
	}
	if e := before["usr/bin/tool"]; e.Size != 7 || len(e.Digest) != 64 {
		t.Errorf("tool: size %d digest %q", e.Size, e.Digest)
	}
	if e := before["usr/sbin/tool-ln"]; e.Target != "../bin/tool" {
		t.Errorf("link target %q", e.Target)
	}

	os.WriteFile(filepath.Join(dir, "usr/bin/tool"), []byte("tool v2"), 0o644)
	os.Chmod(filepath.Join(dir, "etc/a.conf"), 0o600)
	os.Remove(filepath.Join(dir, "var/lib/state.txt"))
	Write(t, dir, map[string]string{"etc/new": "new"})
	got := Diff(before, Take(t, dir))
	var paths []string
	for _, line := range got {
		for _, p := range []string{"usr/bin/tool", "etc/a.conf", "var/lib/state.txt", "etc/new"} {
			if slices.Contains([]string{"differs " + p + ":", "missing " + p, "extra " + p}, firstTwo(line)) {
				paths = append(paths, p)
			}
		}
	}
	slices.Sort(paths)
	if want := []string{"etc/a.conf", "etc/new", "usr/bin/tool", "var/lib/state.txt"}; !slices.Equal(paths, want) || len(got) != 4 {
		t.Errorf("Diff = %q, want one line for each of %v", got, want)
	}
	if d := Diff(before, before); len(d) != 0 {
		t.Errorf("a tree differs from itself: %q", d)
	}
}

// TestNormalize: a normalized file is compared by the digest the function
// gives, whatever its bytes and size.
func TestNormalize(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	Write(t, a, map[string]string{"run.json": `{"took": 1}`})
	Write(t, b, map[string]string{"run.json": `{"took": 12345}`})
	norm := func(rel, p string) (string, bool, error) { return "normalized", rel == "run.json", nil }
	ta, err := Snapshot(a, norm)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := Snapshot(b, norm)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(ta, tb); len(d) != 0 {
		t.Errorf("normalized files differ: %q", d)
	}
	if d := Diff(Take(t, a), Take(t, b)); len(d) != 1 {
		t.Errorf("without normalization: %q, want one difference", d)
	}
}

// firstTwo is a Diff line up to the path ("differs P:", "missing P").
func firstTwo(line string) string {
	for i, n := 0, 0; i < len(line); i++ {
		if line[i] == ' ' {
			if n++; n == 2 {
				return line[:i]
			}
		}
	}
	return line
}
