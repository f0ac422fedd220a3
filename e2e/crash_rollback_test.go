package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCrashThenRollbackCleansTemporaryFiles: a node has spec v1 applied;
// the apply of v2 (new artifacts, pinned) is killed while a temporary file
// exists — a partial download in the cache's staging directory, or the
// temporary file of an install target in /usr/local/bin — and the operator
// rolls back by applying v1 again. That run converges (v1 is what is
// installed), and it must not leave the killed run's temporary files
// behind: a partial download can be hundreds of MiB, and nothing else
// ever removes it.
//
// The kill is timed by watching the directory: SIGKILL as soon as a
// matching temporary file appears (retried in a fresh root when the file
// was renamed away before the signal landed).
func TestCrashThenRollbackCleansTemporaryFiles(t *testing.T) {
	requireRoot(t)
	ts := newTreeServer(t)
	v1, v2 := smallArtifacts(t, 1), smallArtifacts(t, 2)
	spec1 := writeSpec(t, crashSpec(t, v1, ts.url, 1, true))
	spec2 := writeSpec(t, crashSpec(t, v2, ts.url, 2, true))

	for _, c := range []struct {
		name string
		dir  string        // where the temporary file appears, in the root
		mark string        // a substring of its name
		rate int64         // throttle of the killed run
		wait time.Duration // between seeing the file and the kill
	}{
		{"partial download", crashStagingDir, "dl-", 1 << 20, 300 * time.Millisecond},
		{"install temporary file", "usr/local/bin", ".nodeprov-tmp-", 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			for attempt := 1; attempt <= 8; attempt++ {
				root := filepath.Join(t.TempDir(), "root")
				if err := os.Mkdir(root, 0o755); err != nil {
					t.Fatal(err)
				}
				ts.rate.Store(0)
				ts.serve(v1)
				if r := applyJSON(t, root, spec1); r.code != 0 || !r.ok {
					t.Fatalf("apply v1:\n%s", r.out)
				}

				ts.serve(v2)
				ts.rate.Store(c.rate)
				k := startApply(t, root, spec2)
				seen := killWhenPresent(k, filepath.Join(root, c.dir), c.mark, c.wait)
				ts.rate.Store(0)
				var left []string
				for _, l := range leftovers(root) {
					if strings.HasPrefix(l, c.dir+"/") && strings.Contains(filepath.Base(l), c.mark) {
						left = append(left, l)
					}
				}
				if seen == "" || len(left) == 0 {
					t.Logf("attempt %d: no %s left by the kill (saw %q); again", attempt, c.name, seen)
					continue
				}
				t.Logf("the killed v2 apply left %s", strings.Join(left, ", "))

				ts.serve(v1)
				r := applyJSON(t, root, spec1)
				if r.code != 0 || !r.ok {
					t.Fatalf("rollback apply of v1 failed:\n%s", r.out)
				}
				if lo := leftovers(root); len(lo) > 0 {
					var bytes int64
					for _, l := range lo {
						if fi, err := os.Lstat(filepath.Join(root, l)); err == nil {
							bytes += fi.Size()
						}
					}
					t.Errorf("after the killed v2 apply, the v1 apply converged (changed %d) but left the killed run's temporary files (%d bytes): %s",
						r.changed, bytes, strings.Join(lo, ", "))
				}
				if again := applyJSON(t, root, spec1); again.changed != 0 {
					t.Errorf("the rollback did not converge: the next apply changed %d actions:\n%s", again.changed, again.out)
				}
				return
			}
			t.Fatalf("could not kill the v2 apply while a %s existed in 8 attempts", c.name)
		})
	}
}

// killWhenPresent polls dir and SIGKILLs the run wait after an entry whose
// name contains mark appears; it returns that name ("" when the run ended
// first, or after 60 s).
func killWhenPresent(k *killableRun, dir, mark string, wait time.Duration) string {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-k.exited:
			return ""
		default:
		}
		if d, err := os.Open(dir); err == nil {
			names, _ := d.Readdirnames(-1)
			d.Close()
			for _, n := range names {
				if strings.Contains(n, mark) {
					time.Sleep(wait)
					k.kill()
					return n
				}
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	k.kill()
	return ""
}
