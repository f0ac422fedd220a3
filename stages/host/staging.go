package host

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"sync"

	"golang.org/x/sys/unix"
)

// Staging is a set of files written next to their targets under temporary
// names and not yet renamed into place: an archive is extracted into one
// while its bytes still arrive, and only once the archive's digest and
// signature hold are the files committed, or else discarded. Nothing in a
// Staging is visible at a final path before Commit.
//
// Each staged file is synced in the background as soon as it is written,
// so that Commit only renames and syncs each directory once: the serial
// wait per file of WriteFileFrom is gone. Temporary names and the
// temporary-file log are WriteFileFrom's, so a killed run's staged files are
// swept by the next one.
//
// A Staging is used by one goroutine.
type Staging struct {
	r       *Root
	dirs    map[string]*os.File // in-root directory -> open directory
	files   []stagedFile
	created []string // directories staging created, for Discard

	syncs chan *os.File
	wg    sync.WaitGroup
	mu    sync.Mutex
	err   error // the first background sync error
	done  bool
}

type stagedFile struct {
	target  string // in-root path
	dir     string // in-root directory
	tmp     string // name in dir
	dropped bool
}

// stagingSyncers bound the background syncs of one Staging.
const stagingSyncers = 2

// NewStaging starts an empty staging in r.
func (r *Root) NewStaging() *Staging {
	s := &Staging{r: r, dirs: map[string]*os.File{}, syncs: make(chan *os.File, 64)}
	for range stagingSyncers {
		s.wg.Add(1)
		go s.syncer()
	}
	return s
}

func (s *Staging) syncer() {
	defer s.wg.Done()
	for f := range s.syncs {
		err := f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			s.mu.Lock()
			if s.err == nil {
				s.err = fmt.Errorf("sync %s: %w", f.Name(), err)
			}
			s.mu.Unlock()
		}
	}
}

// Root is the root the files are staged in.
func (s *Staging) Root() *Root { return s.r }

// Write stages src as the future contents of p, with o's mode and owner.
// Missing parent directories of p are created (with mode 0755, as
// WriteFileFrom does) and removed again by Discard when they are empty.
func (s *Staging) Write(p string, src io.Reader, o WriteOptions) (n int64, err error) {
	if s.done {
		return 0, errors.New("staging: write after commit or discard")
	}
	dir, name, err := splitParent(p)
	if err != nil {
		return 0, fmt.Errorf("stage: %w", err)
	}
	mode, err := unixMode(o.Mode)
	if err != nil {
		return 0, s.r.wrap("stage", p, err)
	}
	d, err := s.dir(dir, name)
	if err != nil {
		return 0, s.r.wrap("stage", p, err)
	}
	dfd := int(d.Fd())
	tmp, fd, err := createTemp(dfd, name)
	if err != nil {
		return 0, s.r.wrap("stage", p, err)
	}
	f := os.NewFile(uintptr(fd), s.r.HostPath(p))
	defer func() {
		if err != nil {
			f.Close()
			unix.Unlinkat(dfd, tmp, 0)
		}
	}()
	if n, err = io.Copy(f, src); err != nil {
		return n, s.r.wrap("stage", p, err)
	}
	if o.UID >= 0 || o.GID >= 0 {
		if err = unix.Fchown(fd, max(o.UID, -1), max(o.GID, -1)); err != nil {
			return n, s.r.wrap("chown", p, err)
		}
	}
	// After the chown, which clears setuid and setgid.
	if err = unix.Fchmod(fd, mode); err != nil {
		return n, s.r.wrap("chmod", p, err)
	}
	s.files = append(s.files, stagedFile{target: p, dir: dir, tmp: tmp})
	s.syncs <- f
	return n, nil
}

// dir opens dir (in-root, relative) for staging a file name in it, once:
// missing directories are noted for Discard, and stale temporary files of
// name removed, as for WriteFileFrom.
func (s *Staging) dir(dir, name string) (*os.File, error) {
	if d, ok := s.dirs[dir]; ok {
		return d, nil
	}
	var missing []string
	for p := path.Clean("/" + dir); p != "/"; p = path.Dir(p) {
		st, err := s.r.Lstat(p)
		if err != nil {
			return nil, err
		}
		if st.Exists {
			break
		}
		missing = append(missing, p)
	}
	d, err := s.r.openParentForUpdate(dir, name)
	if err != nil {
		return nil, err
	}
	s.created = append(s.created, missing...)
	s.dirs[dir] = d
	return d, nil
}

// Drop discards the staged file of p (its target already holds it).
func (s *Staging) Drop(p string) {
	for i := range s.files {
		f := &s.files[i]
		if d, open := s.dirs[f.dir]; open && f.target == p && !f.dropped {
			unix.Unlinkat(int(d.Fd()), f.tmp, 0)
			f.dropped = true
		}
	}
}

// wait ends the background syncs and returns their first error.
func (s *Staging) wait() error {
	if !s.done {
		s.done = true
		close(s.syncs)
		s.wg.Wait()
	}
	return s.err
}

// Commit renames every staged file into place, once all of them are on
// disk, and syncs each directory once. A file's rename is atomic; a crash
// during Commit leaves each target old or new, never partial. A failed
// Commit discards what it has not renamed.
func (s *Staging) Commit() error {
	if err := s.wait(); err != nil {
		s.Discard()
		return err
	}
	for i := range s.files {
		f := &s.files[i]
		if f.dropped {
			continue
		}
		dfd := int(s.dirs[f.dir].Fd())
		if err := unix.Renameat(dfd, f.tmp, dfd, path.Base(f.target)); err != nil {
			s.Discard()
			return s.r.wrap("rename", f.target, err)
		}
		f.dropped = true
	}
	var err error
	for _, d := range s.sortedDirs() {
		if serr := s.dirs[d].Sync(); serr != nil && err == nil {
			err = s.r.wrap("sync directory", "/"+d, serr)
		}
	}
	s.created = nil
	s.close()
	return err
}

// Discard removes every staged file not yet renamed and the directories
// staging created, when they are empty. It is safe to call more than once
// and after Commit.
func (s *Staging) Discard() {
	s.wait()
	for i := range s.files {
		f := &s.files[i]
		if d, open := s.dirs[f.dir]; open && !f.dropped {
			unix.Unlinkat(int(d.Fd()), f.tmp, 0)
			f.dropped = true
		}
	}
	s.close()
	// Deepest first; one that is not empty (another writer's) stays.
	sort.Sort(sort.Reverse(sort.StringSlice(s.created)))
	for _, p := range s.created {
		dir, name, err := splitParent(p)
		if err != nil {
			continue
		}
		if dfd, err := s.r.openRel(dir, unix.O_PATH|unix.O_DIRECTORY); err == nil {
			unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR)
			unix.Close(dfd)
		}
	}
	s.created = nil
}

func (s *Staging) sortedDirs() []string {
	out := make([]string, 0, len(s.dirs))
	for d := range s.dirs {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

func (s *Staging) close() {
	for d, f := range s.dirs {
		f.Close()
		delete(s.dirs, d)
	}
}
