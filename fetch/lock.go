package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Per-artifact locks. Several processes may share one cache (roots
// provisioned in parallel with --cache DIR, `nodeprov fetch --to DIR` next
// to an apply), and so may the goroutines of one process (two requests for
// the same bytes). Each artifact is downloaded by one of them: "look in the
// cache → download → verify → commit" runs under an exclusive flock(2) on
// <CacheDir>/locks/<name>.lock, and whoever waited finds the entry cached
// when it gets the lock. The name is the expected digest
// ("sha256-<hex>.lock", "sha512-<hex>.lock", resolved from a checksum file
// first when that is where the digest comes from), or, for an artifact that
// only a detached signature verifies, "url-<sha256 of the URL>.lock": its
// digest is known only after the download, so the URL index (urls/) lets
// the next holder find it.
//
// flock locks belong to an open file description: two opens conflict even
// within one process, and the kernel drops a lock when its holder dies
// (SIGKILL included), so a crashed download never blocks the next run.
// Lock files are removed by their holder before it lets go, so the cache
// keeps no trace of them; a waiter that then gets the lock on the removed
// file sees that the path no longer names it and opens the new one. Files
// a killed holder left are removed, under the same protocol, when a
// Fetcher next prepares the cache.
//
// Waiting polls (the lock is held for one download; a blocking flock could
// not be interrupted), honours context cancellation, and never happens
// while another lock is held: a holder waits for nothing but its download
// and the checksum and signature files of its own request, so neither two
// processes nor the bounded parallelism inside one can deadlock.
const (
	locksDir = "locks"
	urlsDir  = "urls"

	lockPollMin = 5 * time.Millisecond
	lockPollMax = 100 * time.Millisecond
)

// Waiter is an optional interface of a Progress: Waiting is called once
// per request that waits because the same artifact is being downloaded
// into the same cache by another process (or another request of this one).
type Waiter interface {
	Waiting(name string)
}

// entryLock is a held per-artifact lock.
type entryLock struct {
	f    *os.File
	path string
}

func digestLockName(d Digest) string { return d.Algorithm + "-" + d.Hex + ".lock" }

func urlKey(rawURL string) string {
	s := sha256.Sum256([]byte(rawURL))
	return hex.EncodeToString(s[:])
}

func urlLockName(rawURL string) string { return "url-" + urlKey(rawURL) + ".lock" }

// cacheSubdir creates <root>/<name> when missing and refuses anything but a
// real directory there (see cacheDirs). The lock and URL-index directories
// are created on first use, so a complete cache on read-only media, made
// before they existed, stays usable.
func cacheSubdir(root, name string, mode os.FileMode) (string, error) {
	p := filepath.Join(root, name)
	if err := os.Mkdir(p, mode); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("create cache %s: %w", root, err)
	}
	fi, err := os.Lstat(p)
	switch {
	case err != nil:
		return "", fmt.Errorf("create cache %s: %w", root, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return "", fmt.Errorf("cache directory %s is a symlink; refusing to use it (remove it, or pass a clean cache directory)", p)
	case !fi.IsDir():
		return "", fmt.Errorf("cache directory %s is not a directory (%v)", p, fi.Mode().Type())
	}
	return p, nil
}

// acquireEntryLock takes the lock name in root's locks/, waiting while
// another holder has it; waiting (if set) is called once, when it must
// wait: when the lock is still held at the second look. A process
// sweeping stale lock files (sweepLocks) holds each for an instant, and
// that is no download to wait for.
func acquireEntryLock(ctx context.Context, root, name string, waiting func()) (*entryLock, error) {
	dir, err := cacheSubdir(root, locksDir, 0o700)
	if err != nil {
		return nil, err
	}
	p := filepath.Join(dir, name)
	delay, told, busy := lockPollMin, false, 0
	for {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", p, err)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			if namesFile(p, f) {
				return &entryLock{f: f, path: p}, nil
			}
			// The previous holder removed the file as it let go (or a
			// sweep did): this lock guards nothing. Take the new file.
			f.Close()
			continue
		}
		f.Close()
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: %w", p, err)
		}
		if busy++; busy >= 2 && !told && waiting != nil {
			waiting()
			told = true
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("waiting for another download of the same artifact (lock %s): %w", p, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, lockPollMax)
	}
}

// namesFile reports whether path still names the open file f.
func namesFile(path string, f *os.File) bool {
	var held, named unix.Stat_t
	if unix.Fstat(int(f.Fd()), &held) != nil || unix.Lstat(path, &named) != nil {
		return false
	}
	return held.Dev == named.Dev && held.Ino == named.Ino
}

// release removes the lock file while still holding it, then lets go.
func (l *entryLock) release() {
	os.Remove(l.path)
	l.f.Close()
}

// sweepLocks removes lock files that no one holds (left by a holder that
// was killed), best effort: a file left behind is empty and harmless.
// Entries that are not regular files are no lock of ours and are removed
// without being followed.
func sweepLocks(root string) {
	dir := filepath.Join(root, locksDir)
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() {
		return // not created yet; a symlink is refused when it is used
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if !e.Type().IsRegular() {
			os.RemoveAll(p)
			continue
		}
		f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil && namesFile(p, f) {
			os.Remove(p)
		}
		f.Close()
	}
}

// lookupURL returns the cache entry that the URL index records for a
// signature-verified artifact. The entry is only a candidate: the caller
// verifies the signature over its bytes before using it. The caller has
// made sure urls/ is a real directory (cacheSubdir).
func lookupURL(root, rawURL string) (Digest, bool) {
	p := filepath.Join(root, urlsDir, urlKey(rawURL))
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > 256 {
		return Digest{}, false
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return Digest{}, false
	}
	d, err := ParseDigest(strings.TrimSpace(string(b)))
	if err != nil || d.Algorithm != SHA256 {
		return Digest{}, false
	}
	return d, true
}

// writeURLIndex records urls/<sha256 of the URL> -> sha256 entry.
// The caller has made sure urls/ is a real directory (cacheSubdir).
func writeURLIndex(root, rawURL, sha256hex string) error {
	return writeIndexFile(root, filepath.Join(urlsDir, urlKey(rawURL)), SHA256+":"+sha256hex+"\n")
}
