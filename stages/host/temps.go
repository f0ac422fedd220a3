package host

import (
	"fmt"
	"os"
	"path"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Temporary files and interrupted runs.
//
// Every write creates a temporary file next to its target and renames it
// into place. A run that is killed leaves that file behind, and the next
// write of the same target removes it — but the next run may never write
// that target again (a rollback to the previous spec, an artifact dropped
// from the spec). So a run that logs its temporary directories records each
// directory it creates a temporary file in, synced before the file is
// created; the next run sweeps those directories, and the log's own
// directory (which holds the run-state files every run writes, so it is
// not logged), before it writes, and a run that ends (successfully or not)
// discards its log: only a killed run leaves one.

// tempLog is the log of one Root.
type tempLog struct {
	path string // in-root, absolute
	mu   sync.Mutex
	seen map[string]bool
}

// LogTempDirs makes r record, in the file p (in-root, absolute), every
// directory it creates a temporary file in. Call it once, under the run
// lock, before writing.
func (r *Root) LogTempDirs(p string) {
	r.temps = &tempLog{path: p, seen: map[string]bool{}}
}

// noteTempDir records dir (relative to the root) in the log, once.
func (r *Root) noteTempDir(dir string) error {
	l := r.temps
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	logDir, name, err := splitParent(l.path)
	if err != nil {
		return err
	}
	// The log's own directory (the run-state files written on every run,
	// even a warm one) is swept every time: no need to log it.
	if l.seen[dir] || dir == logDir {
		return nil
	}
	dfd, err := r.mkdirAll(logDir, 0o755)
	if err != nil {
		return fmt.Errorf("temporary-file log: %w", err)
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("temporary-file log %s: %w", l.path, err)
	}
	f := os.NewFile(uintptr(fd), r.HostPath(l.path))
	defer f.Close()
	if _, err := f.WriteString(path.Clean("/"+dir) + "\n"); err != nil {
		return fmt.Errorf("temporary-file log %s: %w", l.path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("temporary-file log %s: %w", l.path, err)
	}
	l.seen[dir] = true
	return nil
}

// SweepTemps removes the temporary files an interrupted run left in the
// directories its log names, and the log. It returns the in-root paths it
// removed. Call it under the run lock, before writing.
func (r *Root) SweepTemps() ([]string, error) {
	l := r.temps
	if l == nil {
		return nil, nil
	}
	data, exists, err := r.ReadFile(l.path)
	if err != nil {
		return nil, err
	}
	logDir, _, err := splitParent(l.path)
	if err != nil {
		return nil, err
	}
	dirs := map[string]bool{path.Clean("/" + logDir): true}
	for _, line := range strings.Split(string(data), "\n") {
		if p := path.Clean(line); strings.HasPrefix(line, "/") && p == line {
			dirs[p] = true
		}
	}
	var removed []string
	for dir := range dirs {
		names, err := r.sweepDir(dir)
		if err != nil {
			return removed, err
		}
		removed = append(removed, names...)
	}
	sort.Strings(removed)
	if !exists {
		return removed, nil
	}
	return removed, r.Remove(l.path)
}

// sweepDir removes the temporary files in dir, a directory inside the root;
// a missing directory has none.
func (r *Root) sweepDir(dir string) ([]string, error) {
	rel := strings.TrimPrefix(dir, "/")
	if rel == "" {
		rel = "."
	}
	fd, err := r.openRel(rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		if isNotExist(err) || err == unix.ENOTDIR {
			return nil, nil
		}
		return nil, r.wrap("sweep temporary files in", dir, err)
	}
	d := os.NewFile(uintptr(fd), r.HostPath(dir))
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, r.wrap("sweep temporary files in", dir, err)
	}
	var removed []string
	for _, n := range names {
		if !strings.HasPrefix(n, ".") || !strings.Contains(n, tempMarker) {
			continue
		}
		if err := unix.Unlinkat(fd, n, 0); err != nil && err != unix.ENOENT {
			if err == unix.EISDIR {
				continue // not ours: nodeprov never makes temporary directories
			}
			return removed, r.wrap("remove stale temporary file", path.Join(dir, n), err)
		}
		removed = append(removed, path.Join(dir, n))
	}
	return removed, nil
}

// DiscardTempLog removes the log at the end of a run: every temporary file
// of a run that ends was renamed into place or removed.
func (r *Root) DiscardTempLog() error {
	if r.temps == nil {
		return nil
	}
	return r.Remove(r.temps.path)
}
