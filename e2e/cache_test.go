package e2e

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// e2eCacheDir is where expensive test inputs survive between runs.
func e2eCacheDir() string {
	if d := os.Getenv("NODEPROV_E2E_CACHE"); d != "" {
		return d
	}
	return "/var/cache/nodeprov-e2e"
}

// cachedBuild returns e2eCacheDir()/name, building it first with build
// into a temporary directory when usable says it is missing or broken.
// Expensive inputs (containerd 2.x, Packer) are built once and survive
// between runs; a lock makes parallel test processes build them once, and
// the directory is renamed into place only when complete and usable.
func cachedBuild(t *testing.T, name string, usable func(dir string) error, build func(ctx context.Context, out string, log io.Writer) error) string {
	t.Helper()
	cache := e2eCacheDir()
	dir := filepath.Join(cache, name)
	if usable(dir) == nil {
		t.Logf("%s: cached in %s", name, dir)
		return dir
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(cache, name+".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == unix.EWOULDBLOCK {
		t.Logf("%s: waiting for another process building it", name)
		err = unix.Flock(int(lock.Fd()), unix.LOCK_EX)
	}
	if err != nil {
		t.Fatalf("lock %s: %v", lock.Name(), err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	if usable(dir) == nil {
		t.Logf("%s: built by another process into %s", name, dir)
		return dir
	}
	// With the lock held, leftovers are from builds that died (a
	// debootstrap may have left mounts: removeTree unmounts first).
	stale, _ := filepath.Glob(filepath.Join(cache, name+".tmp-*"))
	for _, s := range stale {
		if err := removeTree(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := removeTree(dir); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tmp, err := os.MkdirTemp(cache, name+".tmp-")
	if err != nil {
		t.Fatal(err)
	}
	defer removeTree(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	var log bytes.Buffer
	err = build(ctx, tmp, &log)
	os.WriteFile(filepath.Join(tmp, "build.log"), log.Bytes(), 0o644)
	if err != nil {
		t.Fatalf("building %s: %v\n%s", name, err, log.Bytes())
	}
	if err := usable(tmp); err != nil {
		t.Fatalf("%s built but is not usable: %v\n%s", name, err, log.Bytes())
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: built from Go modules in %s into %s", name, time.Since(start).Round(time.Second), dir)
	return dir
}
