// Package host is the only code in nodeprov that touches the machine: files
// confined to a root directory, /proc/sys, kernel modules and systemd.
package host

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Root is a directory tree that every file operation is confined to.
//
// Paths are resolved the way the target system would see them: an absolute
// symlink target is relative to the root and ".." never climbs above it. A
// Root is safe for concurrent use, except that Close must not race with other
// methods.
type Root struct {
	dir string // absolute, clean host path
	fd  int    // O_PATH directory fd of dir
	// openat2 selects the kernel's RESOLVE_IN_ROOT resolver; when false the
	// component-by-component fallback is used.
	openat2 bool
	// temps logs the directories temporary files are created in; nil
	// logs nothing (see LogTempDirs).
	temps *tempLog
}

// OpenRoot opens dir, which must exist and be a directory, as a Root.
func OpenRoot(dir string) (*Root, error) {
	return openRoot(dir, true)
}

// openRoot opens a Root; allowOpenat2=false forces the fallback resolver.
func openRoot(dir string, allowOpenat2 bool) (*Root, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w", dir, err)
	}
	abs = filepath.Clean(abs)
	fd, err := unix.Open(abs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOTDIR) {
			return nil, fmt.Errorf("open root %s: not a directory", abs)
		}
		return nil, fmt.Errorf("open root %s: %w", abs, err)
	}
	r := &Root{dir: abs, fd: fd}
	if allowOpenat2 {
		r.openat2 = probeOpenat2(fd)
	}
	return r, nil
}

// probeOpenat2 reports whether openat2 with RESOLVE_IN_ROOT works here; it
// is missing on kernels before 5.6 and often denied (EPERM) by seccomp.
func probeOpenat2(fd int) bool {
	nfd, err := unix.Openat2(fd, ".", &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return false
	}
	unix.Close(nfd)
	return true
}

// Close releases the root's directory descriptor.
func (r *Root) Close() error {
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	if err != nil {
		return fmt.Errorf("close root %s: %w", r.dir, err)
	}
	return nil
}

// Dir returns the absolute host path of the root.
func (r *Root) Dir() string { return r.dir }

// IsHostRoot reports whether the root is the host's "/".
func (r *Root) IsHostRoot() bool { return r.dir == "/" }

// HostPath returns the host path of p inside the root; it is meant for
// messages only, never for opening files.
func (r *Root) HostPath(p string) string { return filepath.Join(r.dir, p) }

// checkPath validates an absolute in-root path and returns it relative to
// the root ("." for "/").
func checkPath(p string) (string, error) {
	switch {
	case p == "":
		return "", errors.New("empty path")
	case strings.IndexByte(p, 0) >= 0:
		return "", fmt.Errorf("path %q contains a NUL byte", p)
	case !path.IsAbs(p):
		return "", fmt.Errorf("path %q is not absolute", p)
	case path.Clean(p) != p:
		return "", fmt.Errorf("path %q is not clean (want %q)", p, path.Clean(p))
	}
	if p == "/" {
		return ".", nil
	}
	return p[1:], nil
}

// splitParent validates p and returns its parent relative to the root and its
// final component; p must not be "/".
func splitParent(p string) (dir, name string, err error) {
	rel, err := checkPath(p)
	if err != nil {
		return "", "", err
	}
	if rel == "." {
		return "", "", errors.New("the root directory itself is not allowed here")
	}
	dir, name = path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	return dir, name, nil
}

// resolveError is an error that already names the root where it matters, so
// wrapping it must not name the root again.
type resolveError struct {
	msg string
	err error
}

func (e *resolveError) Error() string { return e.msg }
func (e *resolveError) Unwrap() error { return e.err }

// wrap names the operation, the in-root path and, for a root other than "/",
// the root directory.
func (r *Root) wrap(op, p string, err error) error {
	var re *resolveError
	if r.IsHostRoot() || errors.As(err, &re) {
		return fmt.Errorf("%s %s: %w", op, p, err)
	}
	return fmt.Errorf("%s %s (root %s): %w", op, p, r.dir, err)
}

// inRoot is the " inside root DIR" suffix for messages, empty for "/".
func (r *Root) inRoot() string {
	if r.IsHostRoot() {
		return ""
	}
	return " inside root " + r.dir
}

// unixMode converts permission and setuid/setgid/sticky bits to a mode_t.
func unixMode(m fs.FileMode) (uint32, error) {
	if m&^(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
		return 0, fmt.Errorf("mode %v has bits other than permissions, setuid, setgid and sticky", m)
	}
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= unix.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		u |= unix.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		u |= unix.S_ISVTX
	}
	return u, nil
}

// fileMode splits a stat mode into its type and its permission bits.
func fileMode(st uint32) (typ, mode fs.FileMode) {
	mode = fs.FileMode(st & 0o777)
	if st&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if st&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if st&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	switch st & unix.S_IFMT {
	case unix.S_IFDIR:
		typ = fs.ModeDir
	case unix.S_IFLNK:
		typ = fs.ModeSymlink
	case unix.S_IFIFO:
		typ = fs.ModeNamedPipe
	case unix.S_IFSOCK:
		typ = fs.ModeSocket
	case unix.S_IFBLK:
		typ = fs.ModeDevice
	case unix.S_IFCHR:
		typ = fs.ModeDevice | fs.ModeCharDevice
	}
	return typ, mode
}
