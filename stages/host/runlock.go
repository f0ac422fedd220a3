package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// nodeprov's own state inside a target root.
const (
	// RunLockPath is the run lock: two runs on one root never interleave.
	RunLockPath = "/run/nodeprov.lock"
	// LastRunPath records the outcome of the last apply.
	LastRunPath = "/var/lib/nodeprov/last-run.json"
	// CacheDir is the default content-addressed download cache.
	CacheDir = "/var/cache/nodeprov"
)

// LockError is returned when the run lock could not be taken.
type LockError struct {
	Path   string
	Holder string
	Err    error
}

func (e *LockError) Error() string {
	msg := fmt.Sprintf("lock %s: %v", e.Path, e.Err)
	if e.Holder != "" {
		msg += " (held by " + e.Holder + ")"
	}
	return msg
}

func (e *LockError) Unwrap() error { return e.Err }

// RunLock is a held run lock.
type RunLock struct{ f *os.File }

// Release drops the lock.
func (l *RunLock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// AcquireRunLock takes the exclusive run lock of root (flock on
// RunLockPath; the kernel drops it when its holder dies, SIGKILL included).
// While another run holds it, wait is called once with the holder's
// description and AcquireRunLock polls until timeout (0: do not wait).
func AcquireRunLock(ctx context.Context, root *Root, timeout time.Duration, wait func(holder string)) (*RunLock, error) {
	f, err := root.OpenLock(RunLockPath)
	if err != nil {
		return nil, &LockError{Path: RunLockPath, Err: err}
	}
	deadline := time.Now().Add(timeout)
	told := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, &LockError{Path: RunLockPath, Err: err}
		}
		holder := lockHolder(f)
		if !time.Now().Before(deadline) {
			f.Close()
			return nil, &LockError{Path: RunLockPath, Holder: holder, Err: fmt.Errorf("another nodeprov run holds the lock; gave up after %s (--lock-timeout)", timeout)}
		}
		if !told && wait != nil {
			wait(holder)
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, &LockError{Path: RunLockPath, Holder: holder, Err: ctx.Err()}
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Record who holds the lock, for the message a waiting run prints.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(fmt.Sprintf("pid %d\n", os.Getpid())), 0)
	}
	return &RunLock{f: f}, nil
}

// TryRunLock takes the run lock without waiting, leaving no trace: it
// returns whether the lock file existed before, and release drops the lock
// and removes the file when TryRunLock created it. A root without /run has
// no run in progress; it is not locked, and /run is not created.
func TryRunLock(root *Root) (existed bool, release func(), err error) {
	run, err := root.Lstat(path.Dir(RunLockPath))
	if err != nil || !run.Exists {
		return false, func() {}, err
	}
	before, err := root.Lstat(RunLockPath)
	if err != nil {
		return false, nil, err
	}
	f, err := root.OpenLock(RunLockPath)
	if err != nil {
		return false, nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return false, nil, &LockError{Path: RunLockPath, Holder: lockHolder(f), Err: errors.New("a nodeprov run holds it; wait for it to finish")}
		}
		return false, nil, &LockError{Path: RunLockPath, Err: err}
	}
	return before.Exists, func() {
		if !before.Exists {
			root.Remove(RunLockPath)
		}
		f.Close()
	}, nil
}

func lockHolder(f *os.File) string {
	buf := make([]byte, 64)
	n, _ := f.ReadAt(buf, 0)
	s := strings.TrimSpace(string(buf[:n]))
	if pid, ok := strings.CutPrefix(s, "pid "); ok {
		if _, err := strconv.Atoi(pid); err == nil {
			return s
		}
	}
	return ""
}
