package fetch

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Cache layout under CacheDir:
//
//	tmp/dl-<pid>-<random>   staging files (0600); removed on failure and,
//	                        when their process is gone, at the next start
//	sha256/<hex>            verified artifacts, read-only (0444)
//	sha512/<hex>            index: a 0444 file holding "sha256:<hex>\n",
//	                        naming the sha256 entry with the same content
//	urls/<hex>              index for artifacts only a detached signature
//	                        verifies: <hex> is the sha256 of the URL, the
//	                        file holds "sha256:<hex>\n" of its last verified
//	                        download (a candidate: the signature is checked
//	                        again before the entry is used)
//	locks/<name>.lock       per-artifact download locks (see lock.go);
//	                        present only while held, or after a holder
//	                        was killed until the next start
//
// A small file rather than a symlink keeps the index valid when a cache
// directory is copied with tools that do not preserve links (air-gapped
// hosts), and it is never followed as a path.
const (
	tmpDir    = "tmp"
	stagePref = "dl-"
)

// cacheDirs creates the cache layout. The cache directory itself may be
// reached through a symlink (the operator chose it), but its tmp/, sha256/
// and sha512/ must be real directories: staging files are written, renamed
// and cleaned up in them by plain paths, so a symlink planted there (an
// image root is untrusted) would make the cleanup delete, and the commit
// write, wherever it points.
func cacheDirs(root string) error {
	if root == "" {
		return fmt.Errorf("fetch: no cache directory")
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("create cache %s: %w", root, err)
	}
	for _, d := range []struct {
		name string
		mode os.FileMode
	}{{tmpDir, 0o700}, {SHA256, 0o755}, {SHA512, 0o755}} {
		p := filepath.Join(root, d.name)
		if err := os.Mkdir(p, d.mode); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create cache %s: %w", root, err)
		}
		fi, err := os.Lstat(p)
		switch {
		case err != nil:
			return fmt.Errorf("create cache %s: %w", root, err)
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("cache directory %s is a symlink; refusing to use it (remove it, or pass a clean cache directory)", p)
		case !fi.IsDir():
			return fmt.Errorf("cache directory %s is not a directory (%v)", p, fi.Mode().Type())
		}
	}
	return nil
}

// cleanStale removes staging files left by processes that no longer run.
// Files of live processes (another nodeprov sharing the cache, or this one)
// are left alone.
func cleanStale(root string) error {
	dir := filepath.Join(root, tmpDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("clean staging %s: %w", dir, err)
	}
	var errs []error
	for _, e := range entries {
		if pid, ok := stagingPID(e.Name()); ok && processAlive(pid) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("clean staging %s: %w", dir, errors.Join(errs...))
	}
	return nil
}

func stagingPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, stagePref)
	if !ok {
		return 0, false
	}
	pidStr, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(pidStr)
	return pid, err == nil && pid > 0
}

func processAlive(pid int) bool {
	if pid == os.Getpid() {
		return true
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}

// newStaging creates a fresh, empty staging file and returns its path.
// go-getter's HttpGetter opens an existing destination without truncating
// it (and would resume or skip it after a HEAD probe), so every attempt
// gets a new file.
func newStaging(root string) (string, error) {
	f, err := os.CreateTemp(filepath.Join(root, tmpDir), fmt.Sprintf("%s%d-*", stagePref, os.Getpid()))
	if err != nil {
		return "", fmt.Errorf("create staging file: %w", err)
	}
	name := f.Name()
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", fmt.Errorf("create staging file: %w", err)
	}
	return name, nil
}

func entryPath(root, sha256hex string) string {
	return filepath.Join(root, SHA256, sha256hex)
}

// commit moves a verified staging file into the cache: fsync the file,
// make it read-only, rename it to sha256/<hex>, fsync the directory. When
// sha512hex is set it also writes the sha512 index entry.
func commit(root, staged string, s sums) (string, error) {
	if err := syncFile(staged); err != nil {
		return "", fmt.Errorf("commit %s: %w", s.sha256, err)
	}
	if err := os.Chmod(staged, 0o444); err != nil {
		return "", fmt.Errorf("commit %s: %w", s.sha256, err)
	}
	dst := entryPath(root, s.sha256)
	if err := os.Rename(staged, dst); err != nil {
		return "", fmt.Errorf("commit %s: %w", s.sha256, err)
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return "", fmt.Errorf("commit %s: %w", s.sha256, err)
	}
	if s.sha512 != "" {
		if err := writeIndex(root, s); err != nil {
			return "", err
		}
	}
	return dst, nil
}

// writeIndex records sha512/<hex> -> sha256 entry.
func writeIndex(root string, s sums) error {
	return writeIndexFile(root, filepath.Join(SHA512, s.sha512), SHA256+":"+s.sha256+"\n")
}

// writeIndexFile writes a small read-only index file at rel under root,
// atomically (staging file, fsync, rename, fsync of the directory).
func writeIndexFile(root, rel, content string) error {
	tmp, err := newStaging(root)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return fmt.Errorf("write cache index %s: %w", rel, err)
	}
	if err := syncFile(tmp); err != nil {
		return fmt.Errorf("write cache index %s: %w", rel, err)
	}
	if err := os.Chmod(tmp, 0o444); err != nil {
		return fmt.Errorf("write cache index %s: %w", rel, err)
	}
	dst := filepath.Join(root, rel)
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("write cache index %s: %w", rel, err)
	}
	return syncDir(filepath.Dir(dst))
}

// lookup finds a cache entry for d without touching the network.
func lookup(root string, d Digest) (string, bool) {
	if root == "" || d.Validate() != nil {
		return "", false
	}
	hx := d.Hex
	if d.Algorithm == SHA512 {
		p := filepath.Join(root, SHA512, d.Hex)
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() > 256 {
			return "", false
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return "", false
		}
		target, err := ParseDigest(strings.TrimSpace(string(b)))
		if err != nil || target.Algorithm != SHA256 {
			return "", false
		}
		hx = target.Hex
	}
	p := entryPath(root, hx)
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return "", false
	}
	return p, true
}

// hashFile hashes a file in one pass.
func hashFile(path string, withSHA512 bool) (sums, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return sums{}, 0, err
	}
	defer f.Close()
	h := newHasher(withSHA512)
	n, err := io.Copy(h, f)
	if err != nil {
		return sums{}, n, err
	}
	return h.sums(), n, nil
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}
