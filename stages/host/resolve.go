package host

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// maxSymlinks is the kernel's limit on symlinks followed in one lookup.
const maxSymlinks = 40

// openRel opens rel (relative to the root) with flags, resolving every
// symlink inside the root. The final component is followed unless flags has
// O_NOFOLLOW.
func (r *Root) openRel(rel string, flags int) (int, error) {
	flags |= unix.O_CLOEXEC
	if !r.openat2 {
		return r.walkOpen(rel, flags)
	}
	how := &unix.OpenHow{
		Flags:   uint64(flags),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for range 64 {
		fd, err := unix.Openat2(r.fd, rel, how)
		// RESOLVE_IN_ROOT gives EAGAIN when a rename or mount raced with
		// the lookup; the kernel expects the caller to retry.
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		return fd, err
	}
	return -1, unix.EAGAIN
}

// walkOpen is the resolver for kernels without openat2: it walks rel one
// component at a time with O_NOFOLLOW and expands symlinks itself, restarting
// from the root for absolute targets and never letting ".." leave the root.
func (r *Root) walkOpen(rel string, flags int) (int, error) {
	// stack holds the directories below the root that have been walked into;
	// ".." pops it, so it can never climb above the root or out of a
	// directory by any other route than the one walked.
	var stack []int
	defer func() {
		for _, fd := range stack {
			unix.Close(fd)
		}
	}()
	top := func() int {
		if len(stack) == 0 {
			return r.fd
		}
		return stack[len(stack)-1]
	}
	todo := components(rel)
	links := 0
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		if name == ".." {
			if n := len(stack); n > 0 {
				unix.Close(stack[n-1])
				stack = stack[:n-1]
			}
			continue
		}
		var openErr error
		if len(todo) == 0 {
			fd, err := unix.Openat(top(), name, flags|unix.O_NOFOLLOW, 0)
			if err == nil {
				if flags&(unix.O_PATH|unix.O_NOFOLLOW) != unix.O_PATH {
					return fd, nil
				}
				// O_PATH|O_NOFOLLOW opens a symlink itself instead of
				// failing: check whether this one is to be followed.
				var st unix.Stat_t
				if err := unix.Fstat(fd, &st); err != nil {
					unix.Close(fd)
					return -1, err
				}
				if st.Mode&unix.S_IFMT != unix.S_IFLNK {
					return fd, nil
				}
				unix.Close(fd)
				openErr = unix.ELOOP
			} else if flags&unix.O_NOFOLLOW != 0 || (err != unix.ELOOP && err != unix.ENOTDIR) {
				return -1, err
			} else {
				openErr = err
			}
		} else {
			fd, err := unix.Openat(top(), name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err == nil {
				stack = append(stack, fd)
				continue
			}
			if err != unix.ELOOP && err != unix.ENOTDIR {
				return -1, err
			}
			openErr = err
		}
		target, err := readlinkat(top(), name)
		if err != nil {
			if err == unix.EINVAL { // not a symlink after all
				return -1, openErr
			}
			return -1, err
		}
		if links++; links > maxSymlinks {
			return -1, unix.ELOOP
		}
		if strings.HasPrefix(target, "/") {
			for _, fd := range stack {
				unix.Close(fd)
			}
			stack = stack[:0]
		}
		todo = append(components(target), todo...)
	}
	// The path ended in the root, in ".." or in a symlink to a directory
	// spelled with a trailing "..": open the directory reached.
	return unix.Openat(top(), ".", flags&^unix.O_NOFOLLOW, 0)
}

// components splits a relative or absolute path into its names, dropping
// empty and "." components but keeping "..".
func components(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// readlinkat reads a symlink's target, whatever its length.
func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// mkdirAll makes sure the directory rel exists, creating missing components
// with mode, and returns an O_PATH descriptor of it. It never creates a
// directory through a symlink: an existing symlink component is resolved in
// the root and must lead to an existing directory.
func (r *Root) mkdirAll(rel string, mode uint32) (int, error) {
	cur, err := unix.Openat(r.fd, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	names := components(rel)
	for i := 0; i < len(names); i++ {
		name := names[i]
		if name == ".." { // rel comes from a clean absolute path
			unix.Close(cur)
			return -1, fmt.Errorf("unexpected %q in %q", name, rel)
		}
		prefix := "/" + path.Join(names[:i+1]...)
		next, err := r.mkdirStep(cur, name, prefix, mode)
		unix.Close(cur)
		if err != nil {
			return -1, err
		}
		cur = next
	}
	return cur, nil
}

// mkdirStep opens (creating it when missing) the directory name in dirfd,
// whose in-root path is prefix.
func (r *Root) mkdirStep(dirfd int, name, prefix string, mode uint32) (int, error) {
	const dirFlags = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	for range 8 {
		fd, err := unix.Openat(dirfd, name, dirFlags, 0)
		switch {
		case err == nil:
			return fd, nil
		case err == unix.ENOENT:
			if err := unix.Mkdirat(dirfd, name, mode); err != nil {
				if err == unix.EEXIST { // lost a race: look again
					continue
				}
				return -1, fmt.Errorf("mkdir %s: %w", prefix, err)
			}
			// mkdir applies the umask; set the exact mode asked for.
			if err := fchmodDir(dirfd, name, mode); err != nil {
				return -1, fmt.Errorf("chmod %s: %w", prefix, err)
			}
			continue
		case err == unix.ENOTDIR || err == unix.ELOOP:
			return r.mkdirFollow(dirfd, name, prefix)
		default:
			return -1, fmt.Errorf("open %s: %w", prefix, err)
		}
	}
	return -1, fmt.Errorf("open %s: directory keeps changing", prefix)
}

// mkdirFollow handles an existing non-directory component: a symlink is
// resolved in the root and must lead to a directory; anything else fails.
func (r *Root) mkdirFollow(dirfd int, name, prefix string) (int, error) {
	target, err := readlinkat(dirfd, name)
	if err == unix.EINVAL {
		return -1, fmt.Errorf("%s exists but is not a directory", prefix)
	}
	if err != nil {
		return -1, fmt.Errorf("readlink %s: %w", prefix, err)
	}
	fd, err := r.openRel(prefix[1:], unix.O_PATH|unix.O_DIRECTORY)
	switch {
	case err == nil:
		return fd, nil
	case err == unix.ENOENT:
		return -1, &resolveError{
			msg: fmt.Sprintf("%s is a symlink to %s, which does not exist%s", prefix, target, r.inRoot()),
			err: err,
		}
	case err == unix.ENOTDIR:
		return -1, &resolveError{
			msg: fmt.Sprintf("%s is a symlink to %s, which is not a directory%s", prefix, target, r.inRoot()),
			err: err,
		}
	default:
		return -1, &resolveError{
			msg: fmt.Sprintf("%s is a symlink to %s, which cannot be resolved%s: %v", prefix, target, r.inRoot(), err),
			err: err,
		}
	}
}

// fchmodDir sets the mode of a directory just created in dirfd without
// following a symlink that may have replaced it.
func fchmodDir(dirfd int, name string, mode uint32) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fchmod(fd, mode)
}

// isNotExist reports whether err means a path or one of its parents is
// missing.
func isNotExist(err error) bool {
	return errors.Is(err, unix.ENOENT)
}
