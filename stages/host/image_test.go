package host

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestNormalizeTree(t *testing.T) {
	dir := t.TempDir()
	old := syscall.Umask(0o077)
	err := os.MkdirAll(filepath.Join(dir, "usr/bin"), 0o777)
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "usr/bin/tool"), []byte("#!/bin/sh\n"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("tool", filepath.Join(dir, "usr/bin/alias")); err != nil {
		t.Fatal(err)
	}
	got, err := NormalizeTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, e := range got {
		lines = append(lines, e.Path+" "+e.Type+" "+e.Mode.String()+" "+e.Target)
	}
	want := "/ dir -rwxr-xr-x |/usr dir -rwxr-xr-x |/usr/bin dir -rwxr-xr-x |/usr/bin/alias symlink -rwxrwxrwx tool|/usr/bin/tool file -rwxr-x--- "
	if strings.Join(lines, "|") != want {
		t.Errorf("entries:\n got %q\nwant %q", strings.Join(lines, "|"), want)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "usr")); fi.Mode().Perm() != 0o755 {
		t.Errorf("usr has mode %v after NormalizeTree, want 0755 whatever the umask", fi.Mode().Perm())
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "usr/fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NormalizeTree(dir); err == nil || !strings.Contains(err.Error(), "/usr/fifo: ") {
		t.Errorf("a FIFO in the tree: %v", err)
	}
}
