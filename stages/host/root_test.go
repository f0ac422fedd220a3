package host

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// resolvers are the two path resolvers every Root test runs against.
var resolvers = []struct {
	name    string
	openat2 bool
}{
	{"openat2", true},
	{"fallback", false},
}

// eachRoot runs fn once per resolver, each time with a fresh root directory.
func eachRoot(t *testing.T, fn func(t *testing.T, r *Root, dir string)) {
	t.Helper()
	for _, res := range resolvers {
		t.Run(res.name, func(t *testing.T) {
			dir := t.TempDir()
			r, err := openRoot(dir, res.openat2)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			if r.openat2 != res.openat2 {
				if res.openat2 {
					t.Skip("kernel has no usable openat2")
				}
				t.Fatal("fallback root uses openat2")
			}
			fn(t, r, dir)
		})
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// mkfile creates a host file (and its parents) below dir.
func mkfile(t *testing.T, dir, p, data string, mode fs.FileMode) {
	t.Helper()
	full := filepath.Join(dir, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

// mkdir creates a host directory (and its parents) below dir.
func mkdir(t *testing.T, dir, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
		t.Fatal(err)
	}
}

// mklink creates a host symlink below dir, creating its parents.
func mklink(t *testing.T, dir, p, target string) {
	t.Helper()
	full := filepath.Join(dir, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, full); err != nil {
		t.Fatal(err)
	}
}

// readHost returns a host file's contents, or "<missing>".
func readHost(t *testing.T, full string) string {
	t.Helper()
	data, err := os.ReadFile(full)
	if errors.Is(err, fs.ErrNotExist) {
		return "<missing>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// noTemps fails when a temporary file is left in the host directory.
func noTemps(t *testing.T, hostDir string) {
	t.Helper()
	entries, err := os.ReadDir(hostDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), tempMarker) {
			t.Errorf("temporary file left behind: %s", filepath.Join(hostDir, e.Name()))
		}
	}
}

func emptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("something was written outside the root: %s", filepath.Join(dir, e.Name()))
	}
}

func TestOpenRoot(t *testing.T) {
	dir := t.TempDir()
	mkfile(t, dir, "file", "x", 0o644)
	tests := []struct {
		name    string
		dir     string
		wantErr string
		wantDir string
	}{
		{"directory", dir, "", dir},
		{"unclean", dir + "/./sub/..", "", dir},
		{"missing", filepath.Join(dir, "missing"), "no such file", ""},
		{"file", filepath.Join(dir, "file"), "not a directory", ""},
		{"host root", "/", "", "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := OpenRoot(tt.dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("OpenRoot(%q) error = %v, want %q", tt.dir, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if r.openat2 != probeOpenat2(r.fd) {
				t.Errorf("OpenRoot uses openat2 = %v, but the kernel says %v", r.openat2, !r.openat2)
			}
			if r.Dir() != tt.wantDir {
				t.Errorf("Dir() = %q, want %q", r.Dir(), tt.wantDir)
			}
			if got := r.IsHostRoot(); got != (tt.wantDir == "/") {
				t.Errorf("IsHostRoot() = %v", got)
			}
			if got, want := r.HostPath("/etc/x"), filepath.Join(tt.wantDir, "etc/x"); got != want {
				t.Errorf("HostPath = %q, want %q", got, want)
			}
		})
	}
}

func TestInvalidPaths(t *testing.T) {
	eachRoot(t, func(t *testing.T, r *Root, dir string) {
		tests := []struct {
			path    string
			wantErr string
		}{
			{"", "empty path"},
			{"etc/x", "not absolute"},
			{"/etc/../x", "not clean"},
			{"/etc/", "not clean"},
			{"/etc//x", "not clean"},
			{"/etc/./x", "not clean"},
			{"/etc/x\x00y", "NUL"},
			{"/", "root directory itself"},
		}
		for _, tt := range tests {
			err := r.WriteFile(tt.path, []byte("x"), WriteOptions{Mode: 0o644, UID: -1, GID: -1})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("WriteFile(%q) error = %v, want %q", tt.path, err, tt.wantErr)
			}
			if tt.path == "/" {
				continue
			}
			if _, err := r.Lstat(tt.path); err == nil {
				t.Errorf("Lstat(%q) succeeded", tt.path)
			}
			if _, _, err := r.ReadFile(tt.path); err == nil {
				t.Errorf("ReadFile(%q) succeeded", tt.path)
			}
			if err := r.MkdirAll(tt.path, 0o755); err == nil {
				t.Errorf("MkdirAll(%q) succeeded", tt.path)
			}
		}
		emptyDir(t, dir)
	})
}

func TestWriteFile(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		path    string
		data    string
		opts    WriteOptions
		wantUID int
		wantGID int
		check   func(t *testing.T, dir string)
	}{
		{
			name:    "new file in new directories",
			path:    "/etc/sysctl.d/99-nodeprov.conf",
			data:    "net.ipv4.ip_forward = 1\n",
			opts:    WriteOptions{Mode: 0o644, UID: -1, GID: -1},
			wantUID: 0, wantGID: 0,
			check: func(t *testing.T, dir string) {
				for _, d := range []string{"etc", "etc/sysctl.d"} {
					fi, err := os.Lstat(filepath.Join(dir, d))
					if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
						t.Errorf("%s: %v %v, want a 0755 directory", d, fi.Mode(), err)
					}
				}
			},
		},
		{
			name:    "setuid bit kept",
			path:    "/usr/local/bin/tool",
			data:    "#!/bin/sh\n",
			opts:    WriteOptions{Mode: 0o755 | fs.ModeSetuid, UID: 0, GID: 0},
			wantUID: 0, wantGID: 0,
		},
		{
			name:    "setuid bit survives chown",
			path:    "/usr/local/bin/tool",
			data:    "#!/bin/sh\n",
			opts:    WriteOptions{Mode: 0o755 | fs.ModeSetuid | fs.ModeSetgid, UID: 1234, GID: 1234},
			wantUID: 1234, wantGID: 1234,
		},
		{
			name:    "owner",
			path:    "/home/u/.profile",
			data:    "x",
			opts:    WriteOptions{Mode: 0o600, UID: 1234, GID: 1234},
			wantUID: 1234, wantGID: 1234,
		},
		{
			name:    "group only",
			path:    "/etc/x",
			data:    "x",
			opts:    WriteOptions{Mode: 0o640, UID: -1, GID: 1234},
			wantUID: 0, wantGID: 1234,
		},
		{
			name: "replaces an existing file",
			setup: func(t *testing.T, dir string) {
				mkfile(t, dir, "etc/motd", "old old old old\n", 0o666)
			},
			path:    "/etc/motd",
			data:    "new\n",
			opts:    WriteOptions{Mode: 0o644, UID: -1, GID: -1},
			wantUID: 0, wantGID: 0,
		},
		{
			name: "replaces a symlink, not its target",
			setup: func(t *testing.T, dir string) {
				mkfile(t, dir, "etc/real", "target\n", 0o644)
				mklink(t, dir, "etc/link", "real")
			},
			path:    "/etc/link",
			data:    "new\n",
			opts:    WriteOptions{Mode: 0o644, UID: -1, GID: -1},
			wantUID: 0, wantGID: 0,
			check: func(t *testing.T, dir string) {
				if got := readHost(t, filepath.Join(dir, "etc/real")); got != "target\n" {
					t.Errorf("link target changed to %q", got)
				}
			},
		},
		{
			name:    "empty file",
			path:    "/etc/empty",
			data:    "",
			opts:    WriteOptions{Mode: 0o600, UID: -1, GID: -1},
			wantUID: 0, wantGID: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachRoot(t, func(t *testing.T, r *Root, dir string) {
				if tt.setup != nil {
					tt.setup(t, dir)
				}
				if err := r.WriteFile(tt.path, []byte(tt.data), tt.opts); err != nil {
					t.Fatal(err)
				}
				full := filepath.Join(dir, tt.path)
				fi, err := os.Lstat(full)
				if err != nil {
					t.Fatal(err)
				}
				if !fi.Mode().IsRegular() {
					t.Fatalf("%s is %v, want a regular file", tt.path, fi.Mode())
				}
				if got := readHost(t, full); got != tt.data {
					t.Errorf("content = %q, want %q", got, tt.data)
				}
				wantMode := tt.opts.Mode
				if fi.Mode() != wantMode {
					t.Errorf("mode = %v, want %v", fi.Mode(), wantMode)
				}
				st := fi.Sys().(*syscall.Stat_t)
				if int(st.Uid) != tt.wantUID || int(st.Gid) != tt.wantGID {
					t.Errorf("owner = %d:%d, want %d:%d", st.Uid, st.Gid, tt.wantUID, tt.wantGID)
				}
				noTemps(t, filepath.Dir(full))
				if tt.check != nil {
					tt.check(t, dir)
				}
			})
		})
	}
}

func TestWriteFileFromCount(t *testing.T) {
	eachRoot(t, func(t *testing.T, r *Root, dir string) {
		data := strings.Repeat("0123456789", 100000)
		n, err := r.WriteFileFrom("/big", strings.NewReader(data), WriteOptions{Mode: 0o644, UID: -1, GID: -1})
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(len(data)) {
			t.Errorf("n = %d, want %d", n, len(data))
		}
		if got := readHost(t, filepath.Join(dir, "big")); got != data {
			t.Errorf("content differs (%d bytes)", len(got))
		}
	})
}

func TestWriteFileRemovesStaleTemps(t *testing.T) {
	eachRoot(t, func(t *testing.T, r *Root, dir string) {
		stale := []string{".x.nodeprov-tmp-123", ".x.nodeprov-tmp-0011223344556677"}
		kept := []string{
			".y.nodeprov-tmp-123",                // another target's
			".x.nodeprov-tmp-z.nodeprov-tmp-456", // temporary of "x.nodeprov-tmp-z"
			"x.nodeprov-tmp-1",                   // not hidden: not a temporary
		}
		for _, n := range append(append([]string{}, stale...), kept...) {
			mkfile(t, dir, "etc/"+n, "partial", 0o600)
		}
		if err := r.WriteFile("/etc/x", []byte("ok"), WriteOptions{Mode: 0o644, UID: -1, GID: -1}); err != nil {
			t.Fatal(err)
		}
		for _, n := range stale {
			if _, err := os.Lstat(filepath.Join(dir, "etc", n)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("stale %s not removed (%v)", n, err)
			}
		}
		for _, n := range kept {
			if _, err := os.Lstat(filepath.Join(dir, "etc", n)); err != nil {
				t.Errorf("%s removed: %v", n, err)
			}
		}
	})
}

// failingReader returns some bytes and then an error.
type failingReader struct{ sent bool }

func (f *failingReader) Read(p []byte) (int, error) {
	if !f.sent {
		f.sent = true
		return copy(p, "half a file"), nil
	}
	return 0, errors.New("connection reset")
}

func TestWriteFileFailureKeepsOld(t *testing.T) {
	newData := func() io.Reader { return strings.NewReader("new\n") }
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		src     func() io.Reader
		opts    WriteOptions
		wantErr string
		keep    string // host path whose content must stay "old\n"
	}{
		{
			name:    "reader fails mid-way",
			setup:   func(t *testing.T, dir string) { mkfile(t, dir, "etc/conf", "old\n", 0o644) },
			src:     func() io.Reader { return &failingReader{} },
			opts:    WriteOptions{Mode: 0o644, UID: -1, GID: -1},
			wantErr: "connection reset",
			keep:    "etc/conf",
		},
		{
			name:    "target is a non-empty directory",
			setup:   func(t *testing.T, dir string) { mkfile(t, dir, "etc/conf/inner", "old\n", 0o644) },
			src:     newData,
			opts:    WriteOptions{Mode: 0o644, UID: -1, GID: -1},
			wantErr: "rename /etc/conf",
			keep:    "etc/conf/inner",
		},
		{
			name:    "bad mode",
			setup:   func(t *testing.T, dir string) { mkfile(t, dir, "etc/conf", "old\n", 0o644) },
			src:     newData,
			opts:    WriteOptions{Mode: fs.ModeDir | 0o755, UID: -1, GID: -1},
			wantErr: "bits other than permissions",
			keep:    "etc/conf",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachRoot(t, func(t *testing.T, r *Root, dir string) {
				tt.setup(t, dir)
				_, err := r.WriteFileFrom("/etc/conf", tt.src(), tt.opts)
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), dir) {
					t.Errorf("error %q does not name the root %s", err, dir)
				}
				if got := readHost(t, filepath.Join(dir, tt.keep)); got != "old\n" {
					t.Errorf("old content became %q", got)
				}
				noTemps(t, filepath.Join(dir, "etc"))
			})
		})
	}
}

func TestEscapes(t *testing.T) {
	outside := t.TempDir() // an existing host directory outside every root
	mkfile(t, outside, "secret", "host secret\n", 0o644)
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		run     func(t *testing.T, r *Root) error
		wantErr string // "" when the operation must succeed; "{root}" stands for the root dir
		check   func(t *testing.T, dir string)
	}{
		{
			name: "absolute symlink to an outside directory",
			setup: func(t *testing.T, dir string) {
				mklink(t, dir, "etc/sysctl.d", outside)
			},
			run: func(t *testing.T, r *Root) error {
				return r.WriteFile("/etc/sysctl.d/99-nodeprov.conf", []byte("x"), WriteOptions{Mode: 0o644, UID: -1, GID: -1})
			},
			wantErr: "write /etc/sysctl.d/99-nodeprov.conf: /etc/sysctl.d is a symlink to " + outside + ", which does not exist inside root {root}",
		},
		{
			name: "relative symlink climbing out",
			setup: func(t *testing.T, dir string) {
				mklink(t, dir, "etc/sysctl.d", strings.Repeat("../", 20)+outside[1:])
			},
			run: func(t *testing.T, r *Root) error {
				return r.WriteFile("/etc/sysctl.d/99-nodeprov.conf", []byte("x"), WriteOptions{Mode: 0o644, UID: -1, GID: -1})
			},
			wantErr: "/etc/sysctl.d is a symlink to ../",
		},
		{
			name: "relative dot-dots stay at the root",
			setup: func(t *testing.T, dir string) {
				mklink(t, dir, "etc/up", "../../../..")
			},
			run: func(t *testing.T, r *Root) error {
				return r.WriteFile("/etc/up/landed", []byte("x"), WriteOptions{Mode: 0o644, UID: -1, GID: -1})
			},
			check: func(t *testing.T, dir string) {
				if got := readHost(t, filepath.Join(dir, "landed")); got != "x" {
					t.Errorf("root/landed = %q, want the write there", got)
				}
			},
		},
		{
			name: "absolute symlink followed inside the root",
			setup: func(t *testing.T, dir string) {
				mkdir(t, dir, "data")
				mklink(t, dir, "etc/alt", "/data")
			},
			run: func(t *testing.T, r *Root) error {
				return r.WriteFile("/etc/alt/f", []byte("x"), WriteOptions{Mode: 0o644, UID: -1, GID: -1})
			},
			check: func(t *testing.T, dir string) {
				if got := readHost(t, filepath.Join(dir, "data/f")); got != "x" {
					t.Errorf("root/data/f = %q", got)
				}
			},
		},
		{
			name: "chain of symlinks with dot-dots",
			setup: func(t *testing.T, dir string) {
				mkdir(t, dir, "srv/data")
				mklink(t, dir, "a", "/b/../../../c")
				mklink(t, dir, "b", "srv")
				mklink(t, dir, "c", "srv/data")
			},
			run: func(t *testing.T, r *Root) error {
				return r.WriteFile("/a/f", []byte("x"), WriteOptions{Mode: 0o644, UID: -1, GID: -1})
			},
			check: func(t *testing.T, dir string) {
				if got := readHost(t, filepath.Join(dir, "srv/data/f")); got != "x" {
					t.Errorf("root/srv/data/f = %q", got)
				}
			},
		},
		{
			name: "final symlink to outside is replaced",
			setup: func(t *testing.T, dir string) {
				mklink(t, dir, "etc/f", filepath.Join(outside, "f"))
			},
			run: func(t *testing.T, r *Root) error {
				return r.WriteFile("/etc/f", []byte("x"), WriteOptions{Mode: 0o644, UID: -1, GID: -1})
			},
			check: func(t *testing.T, dir string) {
				if got := readHost(t, filepath.Join(dir, "etc/f")); got != "x" {
					t.Errorf("root/etc/f = %q", got)
				}
			},
		},
		{
			name: "read through an absolute escaping link",
			setup: func(t *testing.T, dir string) {
				mklink(t, dir, "etc/secret", filepath.Join(outside, "secret"))
			},
			run: func(t *testing.T, r *Root) error {
				return expectMissing(r, "/etc/secret")
			},
		},
		{
			name: "read through a relative escaping link",
			setup: func(t *testing.T, dir string) {
				mklink(t, dir, "etc/secret", strings.Repeat("../", 20)+outside[1:]+"/secret")
			},
			run: func(t *testing.T, r *Root) error {
				return expectMissing(r, "/etc/secret")
			},
		},
		{
			name: "read through an escaping parent link",
			setup: func(t *testing.T, dir string) {
				mklink(t, dir, "etc/dir", outside)
			},
			run: func(t *testing.T, r *Root) error {
				return expectMissing(r, "/etc/dir/secret")
			},
		},
		{
			name: "read through an absolute link finds the in-root file",
			setup: func(t *testing.T, dir string) {
				mkfile(t, dir, outside[1:]+"/secret", "inside\n", 0o644)
				mklink(t, dir, "etc/secret", filepath.Join(outside, "secret"))
			},
			run: func(t *testing.T, r *Root) error {
				data, ok, err := r.ReadFile("/etc/secret")
				if err != nil {
					return err
				}
				if !ok || string(data) != "inside\n" {
					return errors.New("read " + string(data) + ", want the in-root file")
				}
				return nil
			},
		},
		{
			name: "symlink loop on write",
			setup: func(t *testing.T, dir string) {
				mklink(t, dir, "a", "b")
				mklink(t, dir, "b", "/a")
			},
			run: func(t *testing.T, r *Root) error {
				return r.WriteFile("/a/x", []byte("x"), WriteOptions{Mode: 0o644, UID: -1, GID: -1})
			},
			wantErr: "too many levels of symbolic links",
		},
		{
			name: "symlink loop on read",
			setup: func(t *testing.T, dir string) {
				mklink(t, dir, "self", "self")
			},
			run: func(t *testing.T, r *Root) error {
				_, _, err := r.ReadFile("/self")
				return err
			},
			wantErr: "too many levels of symbolic links",
		},
		{
			name: "symlink loop in a parent on lstat",
			setup: func(t *testing.T, dir string) {
				mklink(t, dir, "a", "./b/")
				mklink(t, dir, "b", "../a")
			},
			run: func(t *testing.T, r *Root) error {
				_, err := r.Lstat("/a/x")
				return err
			},
			wantErr: "too many levels of symbolic links",
		},
		{
			name: "mkdir through a dangling link",
			setup: func(t *testing.T, dir string) {
				mklink(t, dir, "etc/sysctl.d", outside)
			},
			run: func(t *testing.T, r *Root) error {
				return r.MkdirAll("/etc/sysctl.d/sub", 0o755)
			},
			wantErr: "mkdir /etc/sysctl.d/sub: /etc/sysctl.d is a symlink to " + outside + ", which does not exist inside root {root}",
		},
		{
			name: "symlink creation through an escaping link",
			setup: func(t *testing.T, dir string) {
				mklink(t, dir, "etc/systemd", outside)
			},
			run: func(t *testing.T, r *Root) error {
				return r.Symlink("/lib/x", "/etc/systemd/x")
			},
			wantErr: "/etc/systemd is a symlink to " + outside + ", which does not exist inside root {root}",
		},
		{
			name: "lock file through an escaping link",
			setup: func(t *testing.T, dir string) {
				mklink(t, dir, "run", outside)
			},
			run: func(t *testing.T, r *Root) error {
				f, err := r.OpenLock("/run/nodeprov.lock")
				if err == nil {
					f.Close()
				}
				return err
			},
			wantErr: "/run is a symlink to " + outside,
		},
		{
			name: "remove through an escaping link",
			setup: func(t *testing.T, dir string) {
				mklink(t, dir, "etc/dir", outside)
			},
			run: func(t *testing.T, r *Root) error {
				return r.Remove("/etc/dir/secret")
			},
		},
		{
			name: "chmod through an escaping link",
			setup: func(t *testing.T, dir string) {
				mklink(t, dir, "etc/dir", outside)
			},
			run: func(t *testing.T, r *Root) error {
				return r.Chmod("/etc/dir/secret", 0o600)
			},
			wantErr: "no such file or directory",
		},
		{
			name: "component is a file",
			setup: func(t *testing.T, dir string) {
				mkfile(t, dir, "etc/file", "x", 0o644)
			},
			run: func(t *testing.T, r *Root) error {
				return r.WriteFile("/etc/file/x", []byte("x"), WriteOptions{Mode: 0o644, UID: -1, GID: -1})
			},
			wantErr: "/etc/file exists but is not a directory",
		},
		{
			name: "symlink to a file as a directory",
			setup: func(t *testing.T, dir string) {
				mkfile(t, dir, "etc/file", "x", 0o644)
				mklink(t, dir, "etc/dir", "/etc/file")
			},
			run: func(t *testing.T, r *Root) error {
				return r.WriteFile("/etc/dir/x", []byte("x"), WriteOptions{Mode: 0o644, UID: -1, GID: -1})
			},
			wantErr: "/etc/dir is a symlink to /etc/file, which is not a directory",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachRoot(t, func(t *testing.T, r *Root, dir string) {
				tt.setup(t, dir)
				// A symlink loop must end in an error, not a hang.
				done := make(chan error, 1)
				go func() { done <- tt.run(t, r) }()
				var err error
				select {
				case err = <-done:
				case <-time.After(10 * time.Second):
					t.Fatal("operation did not finish")
				}
				want := strings.ReplaceAll(tt.wantErr, "{root}", dir)
				switch {
				case want == "" && err != nil:
					t.Fatalf("unexpected error: %v", err)
				case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
					t.Fatalf("error = %v, want %q", err, want)
				}
				if got := readHost(t, filepath.Join(outside, "secret")); got != "host secret\n" {
					t.Errorf("outside file changed to %q", got)
				}
				entries, _ := os.ReadDir(outside)
				if len(entries) != 1 {
					t.Errorf("outside directory has %d entries, want only secret", len(entries))
				}
				if fi, err := os.Stat(filepath.Join(outside, "secret")); err != nil || fi.Mode().Perm() != 0o644 {
					t.Errorf("outside file mode changed: %v %v", fi.Mode(), err)
				}
				if tt.check != nil {
					tt.check(t, dir)
				}
			})
		})
	}
}

// expectMissing reads p and fails unless it is reported missing.
func expectMissing(r *Root, p string) error {
	data, ok, err := r.ReadFile(p)
	if err != nil {
		return err
	}
	if ok {
		return errors.New("read " + p + " gave " + string(data) + ", want missing")
	}
	st, err := r.Lstat(p)
	if err != nil {
		return err
	}
	if st.Exists && st.Type != fs.ModeSymlink {
		return errors.New("lstat " + p + " exists")
	}
	if _, err := r.Open(p); !errors.Is(err, fs.ErrNotExist) {
		return errors.New("open " + p + ": want not-exist error")
	}
	return nil
}

func TestLstat(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		path    string
		want    FileState
		wantErr string
	}{
		{name: "missing", path: "/etc/missing", want: FileState{}},
		{name: "missing parent", path: "/no/such/dir/file", want: FileState{}},
		{
			name:  "dangling parent link",
			setup: func(t *testing.T, dir string) { mklink(t, dir, "etc/d", "/nowhere") },
			path:  "/etc/d/f",
			want:  FileState{},
		},
		{
			name: "regular file",
			setup: func(t *testing.T, dir string) {
				mkfile(t, dir, "etc/f", "12345", 0o640)
				os.Chown(filepath.Join(dir, "etc/f"), 1234, 1235)
			},
			path: "/etc/f",
			want: FileState{Exists: true, Mode: 0o640, UID: 1234, GID: 1235, Size: 5},
		},
		{
			name: "setuid file",
			setup: func(t *testing.T, dir string) {
				mkfile(t, dir, "bin/su", "", 0o755)
				os.Chmod(filepath.Join(dir, "bin/su"), 0o755|fs.ModeSetuid)
			},
			path: "/bin/su",
			want: FileState{Exists: true, Mode: 0o755 | fs.ModeSetuid},
		},
		{
			name: "directory",
			setup: func(t *testing.T, dir string) {
				mkdir(t, dir, "tmp")
				os.Chmod(filepath.Join(dir, "tmp"), 0o777|fs.ModeSticky)
			},
			path: "/tmp",
			want: FileState{Exists: true, Type: fs.ModeDir, Mode: 0o777 | fs.ModeSticky},
		},
		{
			name:  "symlink not followed",
			setup: func(t *testing.T, dir string) { mklink(t, dir, "etc/l", "/nowhere/x") },
			path:  "/etc/l",
			want:  FileState{Exists: true, Type: fs.ModeSymlink, Mode: 0o777, LinkTarget: "/nowhere/x", Size: 10},
		},
		{
			name: "through an in-root parent link",
			setup: func(t *testing.T, dir string) {
				mkfile(t, dir, "data/f", "ab", 0o600)
				mklink(t, dir, "etc/d", "/data")
			},
			path: "/etc/d/f",
			want: FileState{Exists: true, Mode: 0o600, Size: 2},
		},
		{
			name:    "parent is a file",
			setup:   func(t *testing.T, dir string) { mkfile(t, dir, "etc/f", "", 0o644) },
			path:    "/etc/f/x",
			wantErr: "not a directory",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachRoot(t, func(t *testing.T, r *Root, dir string) {
				if tt.setup != nil {
					tt.setup(t, dir)
				}
				got, err := r.Lstat(tt.path)
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("error = %v, want %q", err, tt.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if got.Type == fs.ModeDir {
					got.Size = 0 // file system dependent
				}
				if got.Exists && (got.MtimeNs == 0 || got.Ino == 0) {
					t.Errorf("Lstat(%q) lacks mtime or inode: %+v", tt.path, got)
				}
				got.MtimeNs, got.Ino = 0, 0
				if got != tt.want {
					t.Errorf("Lstat(%q) = %+v, want %+v", tt.path, got, tt.want)
				}
			})
		})
	}
}

func TestLstatRoot(t *testing.T) {
	eachRoot(t, func(t *testing.T, r *Root, dir string) {
		st, err := r.Lstat("/")
		if err != nil {
			t.Fatal(err)
		}
		if !st.Exists || st.Type != fs.ModeDir {
			t.Errorf("Lstat(/) = %+v", st)
		}
	})
}

func TestReadFile(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(t *testing.T, dir string)
		path       string
		want       string
		wantExists bool
		wantErr    string
	}{
		{name: "missing", path: "/etc/missing"},
		{name: "missing parent", path: "/no/such/file"},
		{
			name:  "file",
			setup: func(t *testing.T, dir string) { mkfile(t, dir, "etc/hostname", "node1\n", 0o644) },
			path:  "/etc/hostname", want: "node1\n", wantExists: true,
		},
		{
			name: "absolute link inside the root",
			setup: func(t *testing.T, dir string) {
				mkfile(t, dir, "usr/lib/os-release", "ID=debian\n", 0o644)
				mklink(t, dir, "etc/os-release", "/usr/lib/os-release")
			},
			path: "/etc/os-release", want: "ID=debian\n", wantExists: true,
		},
		{
			name: "relative link",
			setup: func(t *testing.T, dir string) {
				mkfile(t, dir, "usr/lib/os-release", "ID=debian\n", 0o644)
				mklink(t, dir, "etc/os-release", "../usr/lib/os-release")
			},
			path: "/etc/os-release", want: "ID=debian\n", wantExists: true,
		},
		{
			name:  "dangling link",
			setup: func(t *testing.T, dir string) { mklink(t, dir, "etc/x", "/nowhere") },
			path:  "/etc/x",
		},
		{
			name:    "directory",
			setup:   func(t *testing.T, dir string) { mkdir(t, dir, "etc/d") },
			path:    "/etc/d",
			wantErr: "is a directory",
		},
		{
			name: "fifo does not hang",
			setup: func(t *testing.T, dir string) {
				mkdir(t, dir, "etc")
				if err := syscall.Mkfifo(filepath.Join(dir, "etc/fifo"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			path:    "/etc/fifo",
			wantErr: "not a regular file",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachRoot(t, func(t *testing.T, r *Root, dir string) {
				if tt.setup != nil {
					tt.setup(t, dir)
				}
				got, exists, err := r.ReadFile(tt.path)
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("error = %v, want %q", err, tt.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if exists != tt.wantExists || string(got) != tt.want {
					t.Errorf("ReadFile(%q) = %q, %v; want %q, %v", tt.path, got, exists, tt.want, tt.wantExists)
				}
			})
		})
	}
}

func TestOpenMissing(t *testing.T) {
	eachRoot(t, func(t *testing.T, r *Root, dir string) {
		_, err := r.Open("/etc/missing")
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("error = %v, want fs.ErrNotExist", err)
		}
		for _, want := range []string{"/etc/missing", dir} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %q", err, want)
			}
		}
	})
}

func TestSymlink(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		target  string
		path    string
		wantErr string
	}{
		{name: "new, with parents", target: "/lib/systemd/system/containerd.service", path: "/etc/systemd/system/multi-user.target.wants/containerd.service"},
		{
			name:   "replaces a link",
			setup:  func(t *testing.T, dir string) { mklink(t, dir, "etc/l", "old") },
			target: "new", path: "/etc/l",
		},
		{
			name:   "replaces a file",
			setup:  func(t *testing.T, dir string) { mkfile(t, dir, "etc/l", "x", 0o644) },
			target: "new", path: "/etc/l",
		},
		{
			name:   "stale temporary removed",
			setup:  func(t *testing.T, dir string) { mklink(t, dir, "etc/.l.nodeprov-tmp-1", "junk") },
			target: "new", path: "/etc/l",
		},
		{
			name:    "directory in the way",
			setup:   func(t *testing.T, dir string) { mkfile(t, dir, "etc/l/x", "x", 0o644) },
			target:  "new",
			path:    "/etc/l",
			wantErr: "rename /etc/l",
		},
		{name: "empty target", target: "", path: "/etc/l", wantErr: "invalid target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachRoot(t, func(t *testing.T, r *Root, dir string) {
				if tt.setup != nil {
					tt.setup(t, dir)
				}
				err := r.Symlink(tt.target, tt.path)
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("error = %v, want %q", err, tt.wantErr)
					}
				} else {
					if err != nil {
						t.Fatal(err)
					}
					got, err := os.Readlink(filepath.Join(dir, tt.path))
					if err != nil || got != tt.target {
						t.Errorf("link = %q, %v; want %q", got, err, tt.target)
					}
				}
				if _, err := os.Stat(filepath.Join(dir, filepath.Dir(tt.path))); err == nil {
					noTemps(t, filepath.Join(dir, filepath.Dir(tt.path)))
				}
			})
		})
	}
}

func TestRemove(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		path    string
		wantErr string
		gone    string // host path that must be gone
		kept    string // host path that must remain
	}{
		{name: "file", setup: func(t *testing.T, dir string) { mkfile(t, dir, "etc/f", "", 0o644) }, path: "/etc/f", gone: "etc/f", kept: "etc"},
		{
			name: "symlink, not its target",
			setup: func(t *testing.T, dir string) {
				mkfile(t, dir, "etc/f", "", 0o644)
				mklink(t, dir, "etc/l", "f")
			},
			path: "/etc/l", gone: "etc/l", kept: "etc/f",
		},
		{name: "empty directory", setup: func(t *testing.T, dir string) { mkdir(t, dir, "etc/d") }, path: "/etc/d", gone: "etc/d", kept: "etc"},
		{
			name:    "non-empty directory",
			setup:   func(t *testing.T, dir string) { mkfile(t, dir, "etc/d/f", "", 0o644) },
			path:    "/etc/d",
			wantErr: "directory not empty",
			kept:    "etc/d/f",
		},
		{name: "missing", path: "/etc/missing"},
		{name: "missing parent", path: "/no/such/file"},
		{name: "root", path: "/", wantErr: "root directory itself"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachRoot(t, func(t *testing.T, r *Root, dir string) {
				if tt.setup != nil {
					tt.setup(t, dir)
				}
				err := r.Remove(tt.path)
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("error = %v, want %q", err, tt.wantErr)
					}
				} else if err != nil {
					t.Fatal(err)
				}
				if tt.gone != "" {
					if _, err := os.Lstat(filepath.Join(dir, tt.gone)); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("%s still there (%v)", tt.gone, err)
					}
				}
				if tt.kept != "" {
					if _, err := os.Lstat(filepath.Join(dir, tt.kept)); err != nil {
						t.Errorf("%s removed: %v", tt.kept, err)
					}
				}
			})
		})
	}
}

func TestChmodChown(t *testing.T) {
	requireRoot(t)
	eachRoot(t, func(t *testing.T, r *Root, dir string) {
		mkfile(t, dir, "etc/f", "x", 0o644)
		mklink(t, dir, "etc/l", "f")
		mkfile(t, dir, "etc/g", "x", 0o644)

		if err := r.Chmod("/etc/f", 0o600|fs.ModeSetgid); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Lstat(filepath.Join(dir, "etc/f")); fi.Mode() != 0o600|fs.ModeSetgid {
			t.Errorf("mode = %v, want 0600 setgid", fi.Mode())
		}
		err := r.Chmod("/etc/l", 0o700)
		if err == nil || !strings.Contains(err.Error(), "is a symlink") {
			t.Errorf("Chmod of a symlink: error = %v", err)
		}
		if fi, _ := os.Lstat(filepath.Join(dir, "etc/f")); fi.Mode() != 0o600|fs.ModeSetgid {
			t.Errorf("Chmod of a symlink changed its target to %v", fi.Mode())
		}

		// The /proc/self/fd route for kernels without fchmodat2.
		dfd, err := r.openRel("etc", unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			t.Fatal(err)
		}
		defer syscall.Close(dfd)
		if err := chmodNoFollow(dfd, "g", 0o751, false); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Lstat(filepath.Join(dir, "etc/g")); fi.Mode() != 0o751 {
			t.Errorf("proc chmod: mode = %v, want 0751", fi.Mode())
		}
		if err := chmodNoFollow(dfd, "l", 0o751, false); err == nil {
			t.Error("proc chmod of a symlink succeeded")
		}

		if err := r.Chown("/etc/l", 1234, 1235); err != nil {
			t.Fatal(err)
		}
		owner := func(p string) (uint32, uint32) {
			fi, err := os.Lstat(filepath.Join(dir, p))
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			return st.Uid, st.Gid
		}
		if u, g := owner("etc/l"); u != 1234 || g != 1235 {
			t.Errorf("link owner = %d:%d, want 1234:1235", u, g)
		}
		if u, g := owner("etc/f"); u != 0 || g != 0 {
			t.Errorf("Chown of a link changed its target to %d:%d", u, g)
		}
		if err := r.Chown("/etc/f", -1, 42); err != nil {
			t.Fatal(err)
		}
		if u, g := owner("etc/f"); u != 0 || g != 42 {
			t.Errorf("owner = %d:%d, want 0:42", u, g)
		}
		if err := r.Chmod("/etc/missing", 0o644); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Chmod of a missing file: error = %v", err)
		}
	})
}

func TestMkdirAll(t *testing.T) {
	eachRoot(t, func(t *testing.T, r *Root, dir string) {
		mkdir(t, dir, "var")
		if err := os.Chmod(filepath.Join(dir, "var"), 0o700); err != nil {
			t.Fatal(err)
		}
		mklink(t, dir, "run", "/var/run")
		mkdir(t, dir, "var/run")
		// 0777 shows that the umask was not applied.
		if err := r.MkdirAll("/var/lib/nodeprov", 0o777); err != nil {
			t.Fatal(err)
		}
		if err := r.MkdirAll("/run/nodeprov", 0o750); err != nil {
			t.Fatal(err)
		}
		want := map[string]fs.FileMode{
			"var":              fs.ModeDir | 0o700, // existing: untouched
			"var/lib":          fs.ModeDir | 0o777,
			"var/lib/nodeprov": fs.ModeDir | 0o777,
			"var/run/nodeprov": fs.ModeDir | 0o750, // created through the in-root link
			"run":              fs.ModeSymlink | 0o777,
		}
		for p, m := range want {
			fi, err := os.Lstat(filepath.Join(dir, p))
			if err != nil {
				t.Errorf("%s: %v", p, err)
				continue
			}
			if fi.Mode() != m {
				t.Errorf("%s: mode %v, want %v", p, fi.Mode(), m)
			}
		}
		if err := r.MkdirAll("/", 0o755); err != nil {
			t.Errorf("MkdirAll(/): %v", err)
		}
	})
}

func TestEnsureDir(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name     string
		setup    func(t *testing.T, dir string)
		path     string
		mode     fs.FileMode
		uid, gid int
		host     string // host path that gets the mode
		wantUID  uint32
		wantGID  uint32
	}{
		{name: "new", path: "/opt/cni/bin", mode: 0o755, uid: -1, gid: -1, host: "opt/cni/bin"},
		{
			name:  "existing, mode and owner fixed",
			setup: func(t *testing.T, dir string) { mkdir(t, dir, "etc/d") },
			path:  "/etc/d", mode: 0o750 | fs.ModeSetgid, uid: 1234, gid: 1235, host: "etc/d", wantUID: 1234, wantGID: 1235,
		},
		{
			name:  "sticky",
			setup: func(t *testing.T, dir string) { mkdir(t, dir, "tmp") },
			path:  "/tmp", mode: 0o777 | fs.ModeSticky, uid: 0, gid: 0, host: "tmp",
		},
		{
			name: "through a final in-root link",
			setup: func(t *testing.T, dir string) {
				mkdir(t, dir, "run")
				mklink(t, dir, "var/run", "/run")
			},
			path: "/var/run", mode: 0o711, uid: -1, gid: 7, host: "run", wantGID: 7,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachRoot(t, func(t *testing.T, r *Root, dir string) {
				if tt.setup != nil {
					tt.setup(t, dir)
				}
				mode := tt.mode
				if err := r.EnsureDir(tt.path, mode, tt.uid, tt.gid); err != nil {
					t.Fatal(err)
				}
				fi, err := os.Lstat(filepath.Join(dir, tt.host))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode() != fs.ModeDir|mode {
					t.Errorf("mode = %v, want %v", fi.Mode(), fs.ModeDir|mode)
				}
				st := fi.Sys().(*syscall.Stat_t)
				if st.Uid != tt.wantUID || st.Gid != tt.wantGID {
					t.Errorf("owner = %d:%d, want %d:%d", st.Uid, st.Gid, tt.wantUID, tt.wantGID)
				}
			})
		})
	}
}

func TestOpenLock(t *testing.T) {
	eachRoot(t, func(t *testing.T, r *Root, dir string) {
		f, err := r.OpenLock("/run/nodeprov/nodeprov.lock")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			t.Fatalf("flock: %v", err)
		}
		fi, err := os.Lstat(filepath.Join(dir, "run/nodeprov/nodeprov.lock"))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() {
			t.Errorf("lock is %v", fi.Mode())
		}
		// A second open of the same file is a different open file
		// description: the lock must conflict.
		g, err := r.OpenLock("/run/nodeprov/nodeprov.lock")
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		if err := syscall.Flock(int(g.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			t.Error("second flock succeeded")
		}

		mkfile(t, dir, "real", "", 0o644)
		mklink(t, dir, "run/l.lock", "/real")
		if h, err := r.OpenLock("/run/l.lock"); err == nil {
			h.Close()
			t.Error("OpenLock followed a final symlink")
		}
	})
}

func TestLookup(t *testing.T) {
	const passwd = `root:x:0:0:root:/root:/bin/bash
# comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin

nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
broken:x:notanumber:1::/:
short:x
etcd:x:1234:1235::/var/lib/etcd:/usr/sbin/nologin
`
	const group = `root:x:0:
docker:x:999:alice
etcd:x:1235:
`
	tests := []struct {
		name    string
		group   bool
		in      string
		want    int
		wantErr string
	}{
		{name: "root", in: "root", want: 0},
		{name: "user", in: "etcd", want: 1234},
		{name: "nobody", in: "nobody", want: 65534},
		{name: "numeric", in: "4242", want: 4242},
		{name: "numeric too big", in: "4294967296", wantErr: "invalid id"},
		{name: "numeric -1", in: "4294967295", wantErr: "invalid id"},
		{name: "unknown", in: "alice", wantErr: `unknown user "alice": not in /etc/passwd inside root`},
		{name: "bad id", in: "broken", wantErr: "line 6"},
		{name: "prefix is not a match", in: "etc", wantErr: "unknown user"},
		{name: "short line ignored", in: "short", wantErr: "unknown user"},
		{name: "empty", in: "", wantErr: "empty name"},
		{name: "group", group: true, in: "docker", want: 999},
		{name: "group by number", group: true, in: "0", want: 0},
		{name: "unknown group", group: true, in: "etcd2", wantErr: `unknown group "etcd2": not in /etc/group`},
	}
	eachRoot(t, func(t *testing.T, r *Root, dir string) {
		mkfile(t, dir, "etc/passwd", passwd, 0o644)
		mkfile(t, dir, "etc/group", group, 0o644)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				lookup := r.LookupUser
				if tt.group {
					lookup = r.LookupGroup
				}
				got, err := lookup(tt.in)
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("error = %v, want %q", err, tt.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if got != tt.want {
					t.Errorf("got %d, want %d", got, tt.want)
				}
			})
		}
	})
}

func TestLookupWithoutDatabase(t *testing.T) {
	eachRoot(t, func(t *testing.T, r *Root, dir string) {
		// The host's /etc/passwd has root; the empty root must not.
		_, err := r.LookupUser("root")
		if err == nil || !strings.Contains(err.Error(), "/etc/passwd does not exist") {
			t.Errorf("error = %v", err)
		}
		if id, err := r.LookupGroup("12"); err != nil || id != 12 {
			t.Errorf("numeric group = %d, %v", id, err)
		}
	})
}

func TestNoDescriptorLeaks(t *testing.T) {
	countFDs := func() int {
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		return len(entries)
	}
	eachRoot(t, func(t *testing.T, r *Root, dir string) {
		mkfile(t, dir, "etc/f", "x", 0o644)
		mklink(t, dir, "etc/up", "../../..")
		mklink(t, dir, "etc/out", "/nowhere")
		mklink(t, dir, "loop", "loop")
		o := WriteOptions{Mode: 0o644, UID: -1, GID: -1}
		ops := func() {
			r.WriteFile("/etc/up/etc/new", []byte("x"), o)
			r.WriteFile("/etc/out/x", []byte("x"), o)
			r.WriteFile("/loop/x", []byte("x"), o)
			r.WriteFileFrom("/etc/g", &failingReader{}, o)
			r.ReadFile("/etc/up/etc/f")
			r.ReadFile("/loop")
			r.Lstat("/etc/up/etc/f")
			r.Lstat("/loop/x")
			r.Symlink("f", "/etc/l")
			r.Chmod("/etc/f", 0o600)
			r.Chmod("/etc/l", 0o600)
			r.Chown("/etc/f", -1, -1)
			r.EnsureDir("/var/lib/x", 0o755, -1, -1)
			r.MkdirAll("/etc/f/x", 0o755)
			r.Remove("/etc/l")
			r.LookupUser("nobody")
			if f, err := r.OpenLock("/run/lock"); err == nil {
				f.Close()
			}
		}
		ops() // first run creates things
		before := countFDs()
		for range 5 {
			ops()
		}
		if after := countFDs(); after != before {
			t.Errorf("open descriptors went from %d to %d", before, after)
		}
	})
}

func TestHostRoot(t *testing.T) {
	for _, res := range resolvers {
		t.Run(res.name, func(t *testing.T) {
			r, err := openRoot("/", res.openat2)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if uid, err := r.LookupUser("root"); err != nil || uid != 0 {
				t.Errorf("LookupUser(root) = %d, %v", uid, err)
			}
			_, err = r.Open("/nonexistent-nodeprov-test")
			if err == nil || strings.Contains(err.Error(), "root /") {
				t.Errorf("error = %v, want one without a root suffix", err)
			}
		})
	}
}

func TestReadDirStaysInRoot(t *testing.T) {
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "host-secret.toml"), nil, 0o644)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc/a"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc/a/2.toml"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "etc/a/1.toml"), nil, 0o644)
	os.Symlink(outside, filepath.Join(dir, "etc/escape"))
	os.Symlink("/etc/a", filepath.Join(dir, "etc/inside"))
	r, err := OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for p, want := range map[string]string{"/etc/a": "1.toml 2.toml", "/etc/inside": "1.toml 2.toml", "/etc/missing": "", "/etc/a/1.toml": ""} {
		names, err := r.ReadDir(p)
		if err != nil || strings.Join(names, " ") != want {
			t.Errorf("ReadDir(%s) = %q, %v; want %q", p, names, err, want)
		}
	}
	if names, err := r.ReadDir("/etc/escape"); err == nil && len(names) > 0 {
		t.Errorf("ReadDir through a symlink out of the root listed %q", names)
	}
}
