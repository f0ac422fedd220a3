package host

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStagingCommit: staged files are invisible at their targets until
// Commit, which puts each in place with its mode and leaves no temporary
// file; a dropped file never replaces its target.
func TestStagingCommit(t *testing.T) {
	eachRoot(t, func(t *testing.T, r *Root, dir string) {
		mkfile(t, dir, "usr/local/bin/old", "old", 0o755)
		mkfile(t, dir, "usr/local/bin/kept", "kept", 0o755)
		s := r.NewStaging()
		for p, data := range map[string]string{
			"/usr/local/bin/old":  "new",
			"/usr/local/bin/kept": "would replace",
			"/opt/cni/bin/bridge": "bridge",
		} {
			if _, err := s.Write(p, strings.NewReader(data), WriteOptions{Mode: 0o755, UID: -1, GID: -1}); err != nil {
				t.Fatal(err)
			}
		}
		s.Drop("/usr/local/bin/kept")
		if got := readHost(t, filepath.Join(dir, "usr/local/bin/old")); got != "old" {
			t.Fatalf("before commit the target holds %q, want the old contents", got)
		}
		if got := readHost(t, filepath.Join(dir, "opt/cni/bin/bridge")); got != "<missing>" {
			t.Fatalf("before commit a new target holds %q, want it absent", got)
		}
		if err := s.Commit(); err != nil {
			t.Fatal(err)
		}
		for p, want := range map[string]string{"usr/local/bin/old": "new", "usr/local/bin/kept": "kept", "opt/cni/bin/bridge": "bridge"} {
			if got := readHost(t, filepath.Join(dir, p)); got != want {
				t.Errorf("%s = %q after commit, want %q", p, got, want)
			}
		}
		st, err := os.Stat(filepath.Join(dir, "opt/cni/bin/bridge"))
		if err != nil || st.Mode().Perm() != 0o755 {
			t.Errorf("bridge: %v, mode %v; want 0755", err, st.Mode())
		}
		noTemps(t, filepath.Join(dir, "usr/local/bin"))
		noTemps(t, filepath.Join(dir, "opt/cni/bin"))
		s.Discard() // after Commit: nothing to undo
		if got := readHost(t, filepath.Join(dir, "opt/cni/bin/bridge")); got != "bridge" {
			t.Errorf("Discard after Commit removed a committed file")
		}
	})
}

// TestStagingDiscard: a discarded staging leaves the root as it was: no
// temporary file, the old targets untouched, and the directories it
// created removed (those that existed stay).
func TestStagingDiscard(t *testing.T) {
	eachRoot(t, func(t *testing.T, r *Root, dir string) {
		mkfile(t, dir, "usr/local/bin/old", "old", 0o755)
		mkdir(t, dir, "opt")
		s := r.NewStaging()
		for _, p := range []string{"/usr/local/bin/old", "/opt/cni/bin/bridge", "/opt/cni/bin/loopback"} {
			if _, err := s.Write(p, strings.NewReader("unverified"), WriteOptions{Mode: 0o755, UID: -1, GID: -1}); err != nil {
				t.Fatal(err)
			}
		}
		s.Discard()
		if got := readHost(t, filepath.Join(dir, "usr/local/bin/old")); got != "old" {
			t.Errorf("old target = %q after discard", got)
		}
		noTemps(t, filepath.Join(dir, "usr/local/bin"))
		if _, err := os.Lstat(filepath.Join(dir, "opt/cni")); !os.IsNotExist(err) {
			t.Errorf("/opt/cni, created by staging, is still there after discard (%v)", err)
		}
		if _, err := os.Lstat(filepath.Join(dir, "opt")); err != nil {
			t.Errorf("/opt existed before and must stay: %v", err)
		}
		if _, err := s.Write("/opt/x", strings.NewReader("x"), WriteOptions{Mode: 0o644}); err == nil {
			t.Error("write after discard succeeded")
		}
	})
}

// TestStagingFailedWrite: a source that fails leaves no staged file.
func TestStagingFailedWrite(t *testing.T) {
	eachRoot(t, func(t *testing.T, r *Root, dir string) {
		s := r.NewStaging()
		defer s.Discard()
		if _, err := s.Write("/usr/bin/x", &failingReader{}, WriteOptions{Mode: 0o755, UID: -1, GID: -1}); err == nil {
			t.Fatal("write from a failing reader succeeded")
		}
		noTemps(t, filepath.Join(dir, "usr/bin"))
		if err := s.Commit(); err != nil {
			t.Fatal(err)
		}
		if got := readHost(t, filepath.Join(dir, "usr/bin/x")); got != "<missing>" {
			t.Errorf("target = %q, want absent", got)
		}
	})
}
