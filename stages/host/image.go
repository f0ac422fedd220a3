package host

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
)

// ImageEntry is one entry of a directory tree that becomes a filesystem
// image.
type ImageEntry struct {
	// Path is absolute inside the image ("/usr/bin/containerd").
	Path string      `json:"path"`
	Type string      `json:"type"` // file, dir or symlink
	Mode fs.FileMode `json:"mode"` // permission bits
	Size int64       `json:"size,omitempty"`
	// Target is a symlink's target.
	Target string `json:"target,omitempty"`
}

// NormalizeTree prepares dir for a reproducible image and lists it in
// lexical order: every directory gets mode 0755 (whatever the umask was
// when it was made), and anything but a regular file, a directory or a
// symlink (a device, a FIFO, a socket) is an error. Owners and times are
// left to the image builder, which sets them all.
func NormalizeTree(dir string) ([]ImageEntry, error) {
	var out []ImageEntry
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		e := ImageEntry{Path: filepath.ToSlash(filepath.Join("/", rel))}
		switch t := d.Type(); {
		case t.IsDir():
			if err := os.Chmod(p, 0o755); err != nil {
				return err
			}
			e.Type, e.Mode = "dir", 0o755
		case t.IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			e.Type, e.Mode, e.Size = "file", fi.Mode().Perm(), fi.Size()
		case t&fs.ModeSymlink != 0:
			if e.Target, err = os.Readlink(p); err != nil {
				return err
			}
			e.Type, e.Mode = "symlink", 0o777
		default:
			return fmt.Errorf("%s: %s is not a regular file, directory or symlink", e.Path, t.Type())
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// Squashfs packs dir into a squashfs image at out with squashfs-tools'
// mksquashfs (≥ 4.4), reproducibly: every inode owned by root, every
// timestamp and the creation time 0, no extended attributes (the build
// host's SELinux labels must not leak in), gzip as every kernel's squashfs
// reads it; mksquashfs sorts directory entries itself and builds
// reproducibly by default. out is replaced.
func Squashfs(ctx context.Context, dir, out string) error {
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		return fmt.Errorf("mksquashfs not found: install squashfs-tools (Debian, Ubuntu: apt-get install squashfs-tools; Fedora: dnf install squashfs-tools)")
	}
	_, err := Command(ctx, "mksquashfs", dir, out, "-noappend", "-quiet", "-no-progress",
		"-comp", "gzip", "-all-root", "-no-xattrs", "-mkfs-time", "0", "-all-time", "0")
	return err
}
