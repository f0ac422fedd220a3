package host

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSweepTempsAfterAKilledRun: a killed run's temporary file is removed
// by the next run even though that run never writes the file's directory;
// the temporary file is planted by hand, as SIGKILL would leave it.
func TestSweepTempsAfterAKilledRun(t *testing.T) {
	eachRoot(t, func(t *testing.T, r *Root, dir string) {
		// Run 1 (killed): writes /usr/local/bin/tool and dies while
		// writing /usr/local/bin/other, whose temporary file stays.
		r.LogTempDirs("/var/lib/nodeprov/temp-dirs")
		if err := r.WriteFile("/usr/local/bin/tool", []byte("tool"), WriteOptions{Mode: 0o755}); err != nil {
			t.Fatal(err)
		}
		if err := r.WriteFile("/etc/app/conf", []byte("conf"), WriteOptions{Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		mkfile(t, dir, "usr/local/bin/.other.nodeprov-tmp-0123456789abcdef", "half", 0o600)
		mkfile(t, dir, "usr/local/bin/.hidden-but-not-ours", "keep", 0o644)
		mkfile(t, dir, "opt/.x.nodeprov-tmp-00", "not logged", 0o600)
		log := readHost(t, filepath.Join(dir, "var/lib/nodeprov/temp-dirs"))
		for _, want := range []string{"/usr/local/bin\n", "/etc/app\n"} {
			if strings.Count(log, want) != 1 {
				t.Errorf("log %q: want %q once", log, want)
			}
		}

		// Run 2 writes nothing in /usr/local/bin, but sweeps it first.
		r2, err := OpenRoot(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer r2.Close()
		r2.openat2 = r.openat2
		r2.LogTempDirs("/var/lib/nodeprov/temp-dirs")
		removed, err := r2.SweepTemps()
		if err != nil {
			t.Fatal(err)
		}
		if len(removed) != 1 || removed[0] != "/usr/local/bin/.other.nodeprov-tmp-0123456789abcdef" {
			t.Errorf("removed %v", removed)
		}
		if _, err := os.Lstat(filepath.Join(dir, "var/lib/nodeprov/temp-dirs")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the swept log is still there: %v", err)
		}
		for _, keep := range []string{"usr/local/bin/tool", "usr/local/bin/.hidden-but-not-ours", "etc/app/conf", "opt/.x.nodeprov-tmp-00"} {
			if _, err := os.Lstat(filepath.Join(dir, keep)); err != nil {
				t.Errorf("%s: %v", keep, err)
			}
		}
		if err := r2.WriteFile("/etc/app/conf", []byte("conf2"), WriteOptions{Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		if err := r2.DiscardTempLog(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(filepath.Join(dir, "var/lib/nodeprov/temp-dirs")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("a run that ended left its log: %v", err)
		}
	})
}

// TestSweepTempsStaysInRoot: a log naming a directory that is a symlink
// out of the root sweeps inside the root only.
func TestSweepTempsStaysInRoot(t *testing.T) {
	eachRoot(t, func(t *testing.T, r *Root, dir string) {
		outside := t.TempDir()
		mkfile(t, outside, ".victim.nodeprov-tmp-1", "outside", 0o600)
		mklink(t, dir, "escape", outside)
		mkfile(t, dir, "var/lib/nodeprov/temp-dirs", "/escape\n/../../"+strings.TrimPrefix(outside, "/")+"\nnot-absolute\n", 0o600)
		r.LogTempDirs("/var/lib/nodeprov/temp-dirs")
		if _, err := r.SweepTemps(); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(filepath.Join(outside, ".victim.nodeprov-tmp-1"))
		if err != nil {
			t.Fatalf("a file outside the root was removed: %v", err)
		}
		io.Copy(io.Discard, f)
		f.Close()
	})
}

// TestSweepTempsInLogDirWithoutLog: temporary files in the log's own
// directory are not logged (every run writes its run-state files there)
// and are swept even when no log exists.
func TestSweepTempsInLogDirWithoutLog(t *testing.T) {
	eachRoot(t, func(t *testing.T, r *Root, dir string) {
		r.LogTempDirs("/var/lib/nodeprov/temp-dirs")
		if err := r.WriteFile("/var/lib/nodeprov/last-run.json", []byte("{}"), WriteOptions{Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		if got := readHost(t, filepath.Join(dir, "var/lib/nodeprov/temp-dirs")); got != "<missing>" {
			t.Fatalf("the log's own directory was logged: %q", got)
		}
		mkfile(t, dir, "var/lib/nodeprov/.installed.json.nodeprov-tmp-0123456789abcdef", "half", 0o600)
		removed, err := r.SweepTemps()
		if err != nil {
			t.Fatal(err)
		}
		if len(removed) != 1 || removed[0] != "/var/lib/nodeprov/.installed.json.nodeprov-tmp-0123456789abcdef" {
			t.Errorf("swept %v, want the stale temporary file of installed.json", removed)
		}
		noTemps(t, filepath.Join(dir, "var/lib/nodeprov"))
	})
}
