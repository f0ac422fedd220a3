package host

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// FileState is what Lstat found at a path.
type FileState struct {
	Exists bool
	// Type is 0 for a regular file, fs.ModeDir, fs.ModeSymlink or another
	// type bit.
	Type fs.FileMode
	// Mode holds the permission bits plus fs.ModeSetuid, ModeSetgid and
	// ModeSticky.
	Mode       fs.FileMode
	UID, GID   int
	Size       int64
	LinkTarget string // for symlinks
	// MtimeNs and Ino identify a file's version cheaply: an installed
	// binary whose size, mtime and inode match the install record need not
	// be hashed again.
	MtimeNs int64
	Ino     uint64
}

// WriteOptions are the mode and owner of a written file. A negative UID or
// GID leaves that id as created by the process (root when run as root).
type WriteOptions struct {
	Mode     fs.FileMode
	UID, GID int
}

// Lstat describes p without following a final symlink. A missing p, or a
// missing parent, gives Exists=false and no error.
func (r *Root) Lstat(p string) (FileState, error) {
	var st unix.Stat_t
	var target string
	if p == "/" {
		if err := unix.Fstat(r.fd, &st); err != nil {
			return FileState{}, r.wrap("stat", p, err)
		}
	} else {
		dir, name, err := splitParent(p)
		if err != nil {
			return FileState{}, fmt.Errorf("stat: %w", err)
		}
		dfd, err := r.openRel(dir, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			if isNotExist(err) {
				return FileState{}, nil
			}
			return FileState{}, r.wrap("stat", p, err)
		}
		defer unix.Close(dfd)
		if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if isNotExist(err) {
				return FileState{}, nil
			}
			return FileState{}, r.wrap("stat", p, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			if target, err = readlinkat(dfd, name); err != nil {
				return FileState{}, r.wrap("readlink", p, err)
			}
		}
	}
	typ, mode := fileMode(st.Mode)
	return FileState{
		Exists:     true,
		Type:       typ,
		Mode:       mode,
		UID:        int(st.Uid),
		GID:        int(st.Gid),
		Size:       st.Size,
		LinkTarget: target,
		MtimeNs:    st.Mtim.Nano(),
		Ino:        st.Ino,
	}, nil
}

// ReadFile returns the contents of the regular file p, following symlinks
// inside the root. A missing p gives exists=false and no error.
func (r *Root) ReadFile(p string) (data []byte, exists bool, err error) {
	f, err := r.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, false, nil
		}
		return nil, false, err
	}
	defer f.Close()
	data, err = io.ReadAll(f)
	if err != nil {
		return nil, true, r.wrap("read", p, err)
	}
	return data, true, nil
}

// Open opens the regular file p read-only, following symlinks inside the
// root. A missing file gives an error wrapping fs.ErrNotExist.
func (r *Root) Open(p string) (*os.File, error) {
	rel, err := checkPath(p)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	// O_NONBLOCK keeps a FIFO planted in an image from hanging the run; it
	// is refused below and cleared for the regular file.
	fd, err := r.openRel(rel, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil {
		return nil, r.wrap("open", p, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, r.wrap("stat", p, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		typ, _ := fileMode(st.Mode)
		if typ == fs.ModeDir {
			return nil, r.wrap("open", p, unix.EISDIR)
		}
		return nil, r.wrap("open", p, fmt.Errorf("not a regular file (%v)", typ))
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, r.wrap("open", p, err)
	}
	return os.NewFile(uintptr(fd), r.HostPath(p)), nil
}

// ReadDir returns the names in directory p, sorted, resolving p inside the
// root like every other path (a symlinked directory never lists a host
// directory outside it). A missing p, or one that is not a directory, has
// no names.
func (r *Root) ReadDir(p string) ([]string, error) {
	rel, err := checkPath(p)
	if err != nil {
		return nil, fmt.Errorf("read directory: %w", err)
	}
	fd, err := r.openRel(rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, r.wrap("read directory", p, err)
	}
	f := os.NewFile(uintptr(fd), r.HostPath(p))
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, r.wrap("read directory", p, err)
	}
	slices.Sort(names)
	return names, nil
}

// OpenLock opens p read-write for flock, creating it with mode 0644 (and its
// parent directories with 0755) when missing. A symlink at p is refused.
func (r *Root) OpenLock(p string) (*os.File, error) {
	dir, name, err := splitParent(p)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	dfd, err := r.mkdirAll(dir, 0o755)
	if err != nil {
		return nil, r.wrap("open lock", p, err)
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, name, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return nil, r.wrap("open lock", p, err)
	}
	return os.NewFile(uintptr(fd), r.HostPath(p)), nil
}

// WriteFile atomically replaces p with data; see WriteFileFrom.
func (r *Root) WriteFile(p string, data []byte, o WriteOptions) error {
	_, err := r.WriteFileFrom(p, bytes.NewReader(data), o)
	return err
}

// WriteFileFrom atomically replaces p with the bytes read from src: they go
// to a temporary file in the same directory, which gets its owner and mode,
// is synced and renamed over p, and the directory is synced. Readers see the
// old or the new file, never a part. A symlink at p is replaced, not
// followed. Missing parent directories are created with mode 0755.
func (r *Root) WriteFileFrom(p string, src io.Reader, o WriteOptions) (n int64, err error) {
	dir, name, err := splitParent(p)
	if err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	mode, err := unixMode(o.Mode)
	if err != nil {
		return 0, r.wrap("write", p, err)
	}
	d, err := r.openParentForUpdate(dir, name)
	if err != nil {
		return 0, r.wrap("write", p, err)
	}
	defer d.Close()
	dfd := int(d.Fd())

	tmp, fd, err := createTemp(dfd, name)
	if err != nil {
		return 0, r.wrap("write", p, err)
	}
	f := os.NewFile(uintptr(fd), r.HostPath(p))
	defer func() {
		if err != nil {
			f.Close()
			unix.Unlinkat(dfd, tmp, 0)
		}
	}()
	if n, err = io.Copy(f, src); err != nil {
		return n, r.wrap("write", p, err)
	}
	if o.UID >= 0 || o.GID >= 0 {
		if err = unix.Fchown(fd, max(o.UID, -1), max(o.GID, -1)); err != nil {
			return n, r.wrap("chown", p, err)
		}
	}
	// After the chown, which clears setuid and setgid.
	if err = unix.Fchmod(fd, mode); err != nil {
		return n, r.wrap("chmod", p, err)
	}
	if err = f.Sync(); err != nil {
		return n, r.wrap("sync", p, err)
	}
	if err = f.Close(); err != nil {
		return n, r.wrap("close", p, err)
	}
	if err = unix.Renameat(dfd, tmp, dfd, name); err != nil {
		return n, r.wrap("rename", p, err)
	}
	if err := d.Sync(); err != nil {
		return n, r.wrap("sync directory of", p, err)
	}
	return n, nil
}

// Symlink atomically makes p a symlink to target (interpreted by whoever
// follows it; inside this package, relative to the root), replacing what is
// at p unless it is a directory.
func (r *Root) Symlink(target, p string) (err error) {
	dir, name, err := splitParent(p)
	if err != nil {
		return fmt.Errorf("symlink: %w", err)
	}
	if target == "" || strings.IndexByte(target, 0) >= 0 {
		return r.wrap("symlink", p, fmt.Errorf("invalid target %q", target))
	}
	d, err := r.openParentForUpdate(dir, name)
	if err != nil {
		return r.wrap("symlink", p, err)
	}
	defer d.Close()
	dfd := int(d.Fd())
	var tmp string
	for range 16 {
		tmp = tempPrefix(name) + randomSuffix()
		if err = unix.Symlinkat(target, dfd, tmp); err != unix.EEXIST {
			break
		}
	}
	if err != nil {
		return r.wrap("symlink", p, err)
	}
	if err = unix.Renameat(dfd, tmp, dfd, name); err != nil {
		unix.Unlinkat(dfd, tmp, 0)
		return r.wrap("rename", p, err)
	}
	if err := d.Sync(); err != nil {
		return r.wrap("sync directory of", p, err)
	}
	return nil
}

// openParentForUpdate creates the directory dir (in-root relative) if needed,
// opens it readable (for listing and fsync), and removes temporary files
// left by an earlier crashed update of name.
func (r *Root) openParentForUpdate(dir, name string) (*os.File, error) {
	pfd, err := r.mkdirAll(dir, 0o755)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Openat(pfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	unix.Close(pfd)
	if err != nil {
		return nil, fmt.Errorf("open parent directory: %w", err)
	}
	d := os.NewFile(uintptr(fd), r.HostPath("/"+dir))
	names, err := d.Readdirnames(-1)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("list parent directory: %w", err)
	}
	prefix := tempPrefix(name)
	for _, n := range names {
		if !isTempName(n, prefix) {
			continue
		}
		if err := unix.Unlinkat(fd, n, 0); err != nil && err != unix.ENOENT && err != unix.EISDIR {
			d.Close()
			return nil, fmt.Errorf("remove stale temporary file %s: %w", n, err)
		}
	}
	if err := r.noteTempDir(dir); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// createTemp creates a new, empty, private temporary file for name in dfd.
func createTemp(dfd int, name string) (string, int, error) {
	const flags = unix.O_CREAT | unix.O_EXCL | unix.O_WRONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	for range 16 {
		tmp := tempPrefix(name) + randomSuffix()
		fd, err := unix.Openat(dfd, tmp, flags, 0o600)
		if err == unix.EEXIST {
			continue
		}
		if err != nil {
			return "", -1, fmt.Errorf("create temporary file: %w", err)
		}
		return tmp, fd, nil
	}
	return "", -1, errors.New("create temporary file: too many name collisions")
}

// tempPrefix is the name prefix of temporary files for name; a long name is
// shortened so the temporary name stays within NAME_MAX.
func tempPrefix(name string) string {
	const keep = 200
	if len(name) > keep {
		name = name[:keep]
	}
	return "." + name + tempMarker
}

// isTempName reports whether n is a temporary file name made from prefix.
// The temporaries of a target whose own name contains the marker (say
// "a.nodeprov-tmp-x" for "a") are not mistaken for this target's.
func isTempName(n, prefix string) bool {
	suffix, ok := strings.CutPrefix(n, prefix)
	return ok && suffix != "" && !strings.Contains(suffix, tempMarker)
}

const (
	tempMarker  = ".nodeprov-tmp-"
	suffixBytes = 8
)

func randomSuffix() string {
	var b [suffixBytes]byte
	rand.Read(b[:]) // never fails (crypto/rand panics on failure)
	return hex.EncodeToString(b[:])
}

// MkdirAll creates p and any missing parents with mode, owned by the
// process. Existing directories are left untouched; symlinks are followed
// inside the root but never created through.
func (r *Root) MkdirAll(p string, mode fs.FileMode) error {
	rel, err := checkPath(p)
	if err != nil {
		return fmt.Errorf("mkdir: %w", err)
	}
	m, err := unixMode(mode)
	if err != nil {
		return r.wrap("mkdir", p, err)
	}
	fd, err := r.mkdirAll(rel, m)
	if err != nil {
		return r.wrap("mkdir", p, err)
	}
	unix.Close(fd)
	return nil
}

// EnsureDir is MkdirAll followed by setting exactly mode and owner on p (a
// negative uid or gid is left unchanged). A symlink at p is followed inside
// the root, like mkdir -p.
func (r *Root) EnsureDir(p string, mode fs.FileMode, uid, gid int) error {
	rel, err := checkPath(p)
	if err != nil {
		return fmt.Errorf("ensure directory: %w", err)
	}
	m, err := unixMode(mode)
	if err != nil {
		return r.wrap("ensure directory", p, err)
	}
	pfd, err := r.mkdirAll(rel, m)
	if err != nil {
		return r.wrap("ensure directory", p, err)
	}
	fd, err := unix.Openat(pfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	unix.Close(pfd)
	if err != nil {
		return r.wrap("ensure directory", p, err)
	}
	defer unix.Close(fd)
	if uid >= 0 || gid >= 0 {
		if err := unix.Fchown(fd, max(uid, -1), max(gid, -1)); err != nil {
			return r.wrap("chown", p, err)
		}
	}
	if err := unix.Fchmod(fd, m); err != nil {
		return r.wrap("chmod", p, err)
	}
	return nil
}

// Remove unlinks the file, symlink or empty directory p. A missing p is not
// an error.
func (r *Root) Remove(p string) error {
	dir, name, err := splitParent(p)
	if err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	dfd, err := r.openRel(dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		if isNotExist(err) {
			return nil
		}
		return r.wrap("remove", p, err)
	}
	defer unix.Close(dfd)
	err = unix.Unlinkat(dfd, name, 0)
	if err == unix.EISDIR {
		err = unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR)
	}
	if err != nil && err != unix.ENOENT {
		return r.wrap("remove", p, err)
	}
	return nil
}

// Chown sets the owner of p itself; a final symlink is not followed (its own
// owner changes). A negative uid or gid is left unchanged.
func (r *Root) Chown(p string, uid, gid int) error {
	dir, name, err := splitParent(p)
	if err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	dfd, err := r.openRel(dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return r.wrap("chown", p, err)
	}
	defer unix.Close(dfd)
	if err := unix.Fchownat(dfd, name, max(uid, -1), max(gid, -1), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return r.wrap("chown", p, err)
	}
	return nil
}

// Chmod sets the mode of p itself. A final symlink is not followed; since
// Linux symlinks have no mode of their own, chmod of one is an error.
func (r *Root) Chmod(p string, mode fs.FileMode) error {
	dir, name, err := splitParent(p)
	if err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	m, err := unixMode(mode)
	if err != nil {
		return r.wrap("chmod", p, err)
	}
	dfd, err := r.openRel(dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return r.wrap("chmod", p, err)
	}
	defer unix.Close(dfd)
	if err := chmodNoFollow(dfd, name, m, true); err != nil {
		return r.wrap("chmod", p, err)
	}
	return nil
}

// chmodNoFollow changes the mode of name in dfd through an O_PATH descriptor
// of the file itself, so a symlink swapped in cannot redirect it. It uses
// fchmodat2 (Linux 6.6) when useFchmodat2 is set and the kernel has it, and
// /proc/self/fd otherwise.
func chmodNoFollow(dfd int, name string, mode uint32, useFchmodat2 bool) error {
	fd, err := unix.Openat(dfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return errors.New("is a symlink, which has no mode of its own")
	}
	if useFchmodat2 {
		err := unix.Fchmodat(fd, "", mode, unix.AT_EMPTY_PATH)
		if err != unix.ENOSYS && err != unix.EOPNOTSUPP && err != unix.EINVAL && err != unix.EPERM {
			return err
		}
	}
	// The magic link refers to the inode itself; chmod does not follow it
	// any further.
	return unix.Chmod(fmt.Sprintf("/proc/self/fd/%d", fd), mode)
}
