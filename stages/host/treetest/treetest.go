// Package treetest is the test toolkit for directory trees, shared by the
// host, archive, machineid and units tests and the e2e suite: Write lays
// out a tree from a short description, Snapshot records every path below a
// directory (type, permission and special bits, owner, size, contents
// digest, link target) and Diff lists how two snapshots differ, one line
// per path. Modification times are never compared.
package treetest

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"maps"
	"slices"

	"github.com/nodeprov/nodeprov/stages/plan"
)

// Entry is one path of a tree as a comparison sees it.
type Entry struct {
	Type   string      // file, dir, symlink, or "other <type>"
	Mode   fs.FileMode // permission and special bits (none for symlinks)
	UID    uint32
	GID    uint32
	Size   int64  // files, when Digest is their sha256
	Digest string // files: sha256 of the contents, or the Normalize result
	Target string // symlinks
}

func (e Entry) String() string {
	s := fmt.Sprintf("%s %s %d:%d", e.Type, plan.Octal(e.Mode), e.UID, e.GID)
	if e.Type == "file" && e.Size >= 0 && !strings.HasPrefix(e.Digest, "(") {
		s += fmt.Sprintf(" %dB", e.Size)
	}
	if e.Digest != "" {
		s += " " + e.Digest[:min(16, len(e.Digest))]
	}
	if e.Target != "" {
		s += " -> " + e.Target
	}
	return s
}

// Tree maps a slash-separated path relative to the snapshot's directory
// ("usr/local/bin/runc") to its entry.
type Tree map[string]Entry

// Paths returns the tree's paths, sorted.
func (t Tree) Paths() []string {
	out := make([]string, 0, len(t))
	for p := range t {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Normalize, when it returns ok, replaces the digest (and drops the size)
// of the regular file rel (at host path p): run-state files whose bytes
// differ from run to run are compared by what must stay the same.
type Normalize func(rel, p string) (digest string, ok bool, err error)

// Snapshot describes every path below dir (not dir itself); norm may be nil.
func Snapshot(dir string, norm Normalize) (Tree, error) {
	out := Tree{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := Entry{Mode: fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky), UID: st.Uid, GID: st.Gid}
		switch {
		case fi.Mode().IsRegular():
			e.Type, e.Size = "file", fi.Size()
			ok := false
			if norm != nil {
				e.Digest, ok, err = norm(rel, p)
				if ok {
					e.Size = -1
				}
			}
			if !ok && err == nil {
				e.Digest, err = FileSHA256(p)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
		case fi.IsDir():
			e.Type = "dir"
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Type = "symlink"
			if e.Target, err = os.Readlink(p); err != nil {
				return err
			}
			e.Mode = 0 // Linux symlinks have no mode of their own
		default:
			e.Type = "other " + fi.Mode().Type().String()
		}
		out[rel] = e
		return nil
	})
	return out, err
}

// Take is Snapshot without normalization that fails the test on error.
func Take(t testing.TB, dir string) Tree {
	t.Helper()
	tree, err := Snapshot(dir, nil)
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return tree
}

// Diff lists the differences between want and got, one sorted line each:
// "missing P (entry)", "extra P (entry)" or "differs P: want …, got …".
func Diff(want, got Tree) []string {
	var out []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			out = append(out, "missing "+p+" ("+w.String()+")")
		case g != w:
			out = append(out, fmt.Sprintf("differs %s: want %s, got %s", p, w, g))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			out = append(out, "extra "+p+" ("+g.String()+")")
		}
	}
	sort.Strings(out)
	return out
}

// Unchanged fails the test, listing the differences, unless dir's tree is
// still before.
func Unchanged(t testing.TB, before Tree, dir string) {
	t.Helper()
	if d := Diff(before, Take(t, dir)); len(d) > 0 {
		t.Errorf("%s changed:\n  %s", dir, strings.Join(d, "\n  "))
	}
}

// Write lays out a tree below dir. Each key is a slash-separated relative
// path: "a/b" is a file with the value as contents (mode 0644), "a/b/" a
// directory, and a value "-> target" makes a symlink. Parents are created
// with mode 0755.
func Write(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for _, rel := range slices.Sorted(maps.Keys(files)) {
		full := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		v := files[rel]
		var err error
		switch {
		case strings.HasSuffix(rel, "/"):
			err = os.MkdirAll(full, 0o755)
		case strings.HasPrefix(v, "-> "):
			err = os.Symlink(strings.TrimPrefix(v, "-> "), full)
		default:
			err = os.WriteFile(full, []byte(v), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// FileSHA256 returns the hex sha256 of a host file.
func FileSHA256(p string) (string, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", sha256.Sum256(data)), nil
}
