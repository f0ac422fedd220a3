package stages

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nodeprov/nodeprov/stages/host"
)

// LockPath is the run lock inside the target root.
const LockPath = "/run/nodeprov.lock"

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

// Lock is a held run lock.
type Lock struct{ f *os.File }

// Release drops the lock.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// AcquireLock takes the exclusive run lock of a root, so two runs never
// interleave. While another run holds it, wait is called once with the
// holder's description and AcquireLock polls until timeout (0: do not wait).
func AcquireLock(ctx context.Context, root *host.Root, timeout time.Duration, wait func(holder string)) (*Lock, error) {
	f, err := root.OpenLock(LockPath)
	if err != nil {
		return nil, &LockError{Path: LockPath, Err: err}
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
			return nil, &LockError{Path: LockPath, Err: err}
		}
		holder := lockHolder(f)
		if !time.Now().Before(deadline) {
			f.Close()
			return nil, &LockError{Path: LockPath, Holder: holder, Err: fmt.Errorf("another nodeprov run holds the lock; gave up after %s (--lock-timeout)", timeout)}
		}
		if !told && wait != nil {
			wait(holder)
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, &LockError{Path: LockPath, Holder: holder, Err: ctx.Err()}
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Record who holds the lock, for the message a waiting run prints.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(fmt.Sprintf("pid %d\n", os.Getpid())), 0)
	}
	return &Lock{f: f}, nil
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
