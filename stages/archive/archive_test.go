package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/nodeprov/nodeprov/stages/host/treetest"
)

// Release-shaped archives.
func containerdRelease(t testing.TB) []byte {
	return tgz(t,
		dir("bin/"),
		file("bin/containerd-shim-runc-v2", 0o755, "shim binary"),
		file("bin/containerd", 0o755, "containerd binary"),
		file("bin/containerd-stress", 0o755, "stress binary"),
		file("bin/ctr", 0o755, "ctr binary"),
	)
}

func cniRelease(t testing.TB) []byte {
	return tgz(t,
		dir("./"),
		file("./LICENSE", 0o644, "Apache License"),
		file("./README.md", 0o644, "# plugins"),
		file("./bridge", 0o755, "bridge plugin"),
		file("./host-local", 0o755, "host-local plugin"),
		file("./loopback", 0o755, "loopback plugin"),
	)
}

func crictlRelease(t testing.TB) []byte {
	return tgz(t, file("crictl", 0o755, "crictl binary"))
}

func TestInstall(t *testing.T) {
	tests := []struct {
		name    string
		archive []byte
		sel     Selection
		want    []Member // SHA256 filled from the data below
		data    map[string]string
		files   map[string]string // snapshot of the whole root
	}{
		{
			name:    "containerd files",
			archive: containerdRelease(t),
			sel: Selection{Files: map[string]string{
				"bin/containerd":                "/usr/local/bin/containerd",
				"bin/ctr":                       "/usr/local/bin/ctr",
				"./bin/containerd-shim-runc-v2": "/usr/local/bin/containerd-shim-runc-v2",
			}},
			want: []Member{
				{Name: "bin/containerd-shim-runc-v2", Target: "/usr/local/bin/containerd-shim-runc-v2", Mode: 0o755},
				{Name: "bin/containerd", Target: "/usr/local/bin/containerd", Mode: 0o755},
				{Name: "bin/ctr", Target: "/usr/local/bin/ctr", Mode: 0o755},
			},
			data: map[string]string{
				"/usr/local/bin/containerd-shim-runc-v2": "shim binary",
				"/usr/local/bin/containerd":              "containerd binary",
				"/usr/local/bin/ctr":                     "ctr binary",
			},
		},
		{
			name:    "containerd tree with strip",
			archive: containerdRelease(t),
			sel:     Selection{To: "/usr/local/bin", Strip: 1, Include: []string{"containerd", "ctr"}},
			want: []Member{
				{Name: "bin/containerd", Target: "/usr/local/bin/containerd", Mode: 0o755},
				{Name: "bin/ctr", Target: "/usr/local/bin/ctr", Mode: 0o755},
			},
			data: map[string]string{
				"/usr/local/bin/containerd": "containerd binary",
				"/usr/local/bin/ctr":        "ctr binary",
			},
		},
		{
			name:    "containerd tree without strip",
			archive: containerdRelease(t),
			sel:     Selection{To: "/usr/local", Include: []string{"bin/containerd"}},
			want:    []Member{{Name: "bin/containerd", Target: "/usr/local/bin/containerd", Mode: 0o755}},
			data:    map[string]string{"/usr/local/bin/containerd": "containerd binary"},
		},
		{
			name:    "cni whole tree",
			archive: cniRelease(t),
			sel:     Selection{To: "/opt/cni/bin"},
			want: []Member{
				{Name: "LICENSE", Target: "/opt/cni/bin/LICENSE", Mode: 0o644},
				{Name: "README.md", Target: "/opt/cni/bin/README.md", Mode: 0o644},
				{Name: "bridge", Target: "/opt/cni/bin/bridge", Mode: 0o755},
				{Name: "host-local", Target: "/opt/cni/bin/host-local", Mode: 0o755},
				{Name: "loopback", Target: "/opt/cni/bin/loopback", Mode: 0o755},
			},
			data: map[string]string{
				"/opt/cni/bin/LICENSE":    "Apache License",
				"/opt/cni/bin/README.md":  "# plugins",
				"/opt/cni/bin/bridge":     "bridge plugin",
				"/opt/cni/bin/host-local": "host-local plugin",
				"/opt/cni/bin/loopback":   "loopback plugin",
			},
		},
		{
			name:    "cni include",
			archive: cniRelease(t),
			sel:     Selection{To: "/opt/cni/bin", Include: []string{"./bridge", "loopback"}},
			want: []Member{
				{Name: "bridge", Target: "/opt/cni/bin/bridge", Mode: 0o755},
				{Name: "loopback", Target: "/opt/cni/bin/loopback", Mode: 0o755},
			},
			data: map[string]string{
				"/opt/cni/bin/bridge":   "bridge plugin",
				"/opt/cni/bin/loopback": "loopback plugin",
			},
		},
		{
			name:    "cni files with leading dot",
			archive: cniRelease(t),
			sel:     Selection{Files: map[string]string{"host-local": "/opt/cni/bin/host-local"}},
			want:    []Member{{Name: "host-local", Target: "/opt/cni/bin/host-local", Mode: 0o755}},
			data:    map[string]string{"/opt/cni/bin/host-local": "host-local plugin"},
		},
		{
			name:    "crictl",
			archive: crictlRelease(t),
			sel:     Selection{Files: map[string]string{"crictl": "/usr/local/bin/crictl"}},
			want:    []Member{{Name: "crictl", Target: "/usr/local/bin/crictl", Mode: 0o755}},
			data:    map[string]string{"/usr/local/bin/crictl": "crictl binary"},
		},
		{
			name: "modes masked",
			archive: tgz(t,
				file("a", 0o777, "a"), file("b", 0o600, "b"), file("c", 0o700, "c"),
				file("d", 0o1755, "d"), file("e", 0o444, "e"), file("f", 0o100, "f"),
				file("g", 0o000, "g"),
			),
			sel: Selection{To: "/m"},
			want: []Member{
				{Name: "a", Target: "/m/a", Mode: 0o755}, {Name: "b", Target: "/m/b", Mode: 0o644},
				{Name: "c", Target: "/m/c", Mode: 0o755}, {Name: "d", Target: "/m/d", Mode: 0o755},
				{Name: "e", Target: "/m/e", Mode: 0o644}, {Name: "f", Target: "/m/f", Mode: 0o755},
				{Name: "g", Target: "/m/g", Mode: 0o644},
			},
			data: map[string]string{"/m/a": "a", "/m/b": "b", "/m/c": "c", "/m/d": "d", "/m/e": "e", "/m/f": "f", "/m/g": "g"},
		},
		{
			name: "unselected links and devices are ignored",
			archive: tgz(t,
				dir("bin"),
				symlink("bin/ctr-alias", "/etc/shadow"),
				hardlink("bin/hard", "/etc/shadow"),
				special("dev/null", tar.TypeChar),
				special("fifo", tar.TypeFifo),
				file("bin/containerd", 0o755, "containerd binary"),
				file("setuid-helper", 0o4755, "not selected"),
			),
			sel:  Selection{Files: map[string]string{"bin/containerd": "/usr/bin/containerd"}},
			want: []Member{{Name: "bin/containerd", Target: "/usr/bin/containerd", Mode: 0o755}},
			data: map[string]string{"/usr/bin/containerd": "containerd binary"},
		},
		{
			name:    "empty member",
			archive: tgz(t, file("empty", 0o644, "")),
			sel:     Selection{Files: map[string]string{"empty": "/etc/empty"}},
			want:    []Member{{Name: "empty", Target: "/etc/empty", Mode: 0o644}},
			data:    map[string]string{"/etc/empty": ""},
		},
		{
			name: "repeated directory entries and a pax global header",
			archive: gz(t, slices.Concat(
				tarWithGlobal(t, dir("bin"), dir("bin/"), file("bin/x", 0o755, "x")),
			)),
			sel:  Selection{To: "/opt"},
			want: []Member{{Name: "bin/x", Target: "/opt/bin/x", Mode: 0o755}},
			data: map[string]string{"/opt/bin/x": "x"},
		},
		{
			name:    "concatenated gzip members",
			archive: concatGzip(t, tarBytes(t, file("a", 0o755, "aaa"), file("b", 0o644, "bbb"))),
			sel:     Selection{To: "/x"},
			want:    []Member{{Name: "a", Target: "/x/a", Mode: 0o755}, {Name: "b", Target: "/x/b", Mode: 0o644}},
			data:    map[string]string{"/x/a": "aaa", "/x/b": "bbb"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range tt.want {
				d := tt.data[tt.want[i].Target]
				tt.want[i].Size = int64(len(d))
				tt.want[i].SHA256 = sha(d)
			}
			planned, err := Plan(bytes.NewReader(tt.archive), tt.sel, Limits{})
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			if !slices.Equal(planned, tt.want) {
				t.Errorf("Plan:\n got %+v\nwant %+v", planned, tt.want)
			}

			r := newTestRoot(t)
			got, err := Install(context.Background(), r.root, fromBytes(tt.archive), tt.sel, Limits{})
			if err != nil {
				t.Fatalf("Install: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Install:\n got %+v\nwant %+v", got, tt.want)
			}
			for _, m := range tt.want {
				p := filepath.Join(r.dir, m.Target)
				data, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if string(data) != tt.data[m.Target] {
					t.Errorf("%s holds %q, want %q", m.Target, data, tt.data[m.Target])
				}
				st, err := os.Lstat(p)
				if err != nil {
					t.Fatal(err)
				}
				if st.Mode() != m.Mode {
					t.Errorf("%s has mode %v, want %v", m.Target, st.Mode(), m.Mode)
				}
				sys := st.Sys().(*syscall.Stat_t)
				if int(sys.Uid) != os.Geteuid() || int(sys.Gid) != os.Getegid() {
					t.Errorf("%s is owned by %d:%d, want %d:%d", m.Target, sys.Uid, sys.Gid, os.Geteuid(), os.Getegid())
				}
			}
			// Only the targets and their directories are in the root.
			for p, e := range treetest.Take(t, r.dir) {
				if _, ok := tt.data["/"+p]; !ok && e.Type != "dir" {
					t.Errorf("unexpected /%s (%s) in the root", p, e)
				}
			}
			assertEmpty(t, "outside", r.outside)
		})
	}
}

// tarWithGlobal is a tar of the entries preceded by a PAX global header.
func tarWithGlobal(t testing.TB, entries ...ent) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header",
		PAXRecords: map[string]string{"comment": "0123456789abcdef"}}); err != nil {
		t.Fatal(err)
	}
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := writeTar(&b, entries); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// concatGzip compresses data as two gzip members, split in the middle.
func concatGzip(t testing.TB, data []byte) []byte {
	half := len(data) / 2
	return slices.Concat(gz(t, data[:half]), gz(t, data[half:]))
}

func TestInstallTwiceIsIdempotent(t *testing.T) {
	r := newTestRoot(t)
	sel := Selection{To: "/opt/cni/bin"}
	ctx := context.Background()
	first, err := Install(ctx, r.root, fromBytes(cniRelease(t)), sel, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	before := treetest.Take(t, r.dir)
	inodes := make(map[string]uint64)
	for _, m := range first {
		if m.Unchanged {
			t.Errorf("first install: %s reported unchanged", m.Name)
		}
		st, err := os.Stat(filepath.Join(r.dir, m.Target))
		if err != nil {
			t.Fatal(err)
		}
		inodes[m.Target] = st.Sys().(*syscall.Stat_t).Ino
	}

	opens := 0
	open := func() (io.ReadCloser, error) {
		opens++
		return fromBytes(cniRelease(t))()
	}
	second, err := Install(ctx, r.root, open, sel, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if opens != 1 {
		t.Errorf("second install opened the archive %d times, want 1 (nothing to write)", opens)
	}
	for i, m := range second {
		if !m.Unchanged {
			t.Errorf("second install: %s not reported unchanged", m.Name)
		}
		m.Unchanged = false
		if m != first[i] {
			t.Errorf("second install member %+v, first %+v", m, first[i])
		}
		st, err := os.Stat(filepath.Join(r.dir, m.Target))
		if err != nil {
			t.Fatal(err)
		}
		if ino := st.Sys().(*syscall.Stat_t).Ino; ino != inodes[m.Target] {
			t.Errorf("%s was rewritten (inode %d, was %d)", m.Target, ino, inodes[m.Target])
		}
	}
	treetest.Unchanged(t, before, r.dir)
}

func TestInstallReplaces(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, r testRoot)
	}{
		{"different contents", func(t *testing.T, r testRoot) {
			write(t, filepath.Join(r.dir, "usr/local/bin/crictl"), "old crictl", 0o755)
		}},
		{"same contents other mode", func(t *testing.T, r testRoot) {
			write(t, filepath.Join(r.dir, "usr/local/bin/crictl"), "crictl binary", 0o700)
		}},
		{"setuid copy", func(t *testing.T, r testRoot) {
			p := filepath.Join(r.dir, "usr/local/bin/crictl")
			write(t, p, "crictl binary", 0o755)
			if err := os.Chmod(p, 0o755|fs.ModeSetuid); err != nil {
				t.Fatal(err)
			}
		}},
		{"symlink pointing outside", func(t *testing.T, r testRoot) {
			if err := os.MkdirAll(filepath.Join(r.dir, "usr/local/bin"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join(r.outside, "crictl"), filepath.Join(r.dir, "usr/local/bin/crictl")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRoot(t)
			tt.setup(t, r)
			sel := Selection{Files: map[string]string{"crictl": "/usr/local/bin/crictl"}}
			got, err := Install(context.Background(), r.root, fromBytes(crictlRelease(t)), sel, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if got[0].Unchanged {
				t.Error("reported unchanged")
			}
			p := filepath.Join(r.dir, "usr/local/bin/crictl")
			st, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode() != 0o755 {
				t.Errorf("mode %v, want -rwxr-xr-x", st.Mode())
			}
			if data, _ := os.ReadFile(p); string(data) != "crictl binary" {
				t.Errorf("contents %q", data)
			}
			assertEmpty(t, "outside", r.outside)
		})
	}
}

func write(t *testing.T, p, data string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// TestInstallTargetConflicts checks targets that cannot be written: nothing
// is written, not even the members whose targets are fine.
func TestInstallTargetConflicts(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"target is a directory", func(t *testing.T, dir string) {
			if err := os.MkdirAll(filepath.Join(dir, "usr/local/bin/ctr"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, "/usr/local/bin/ctr: target exists and is a directory"},
		{"parent is a file", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "usr/local/bin"), "not a directory", 0o644)
		}, "/usr/local/bin exists and is not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRoot(t)
			tt.setup(t, r.dir)
			before := treetest.Take(t, r.dir)
			sel := Selection{To: "/usr/local/bin", Strip: 1}
			_, err := Install(context.Background(), r.root, fromBytes(containerdRelease(t)), sel, Limits{})
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
			treetest.Unchanged(t, before, r.dir)
		})
	}
}

// TestInstallArchiveChanges gives the second pass other bytes than the
// first: the changed member is never put in place.
func TestInstallArchiveChanges(t *testing.T) {
	checked := tgz(t, file("bin/containerd", 0o755, "good binary"), file("bin/ctr", 0o755, "ctr"))
	tests := []struct {
		name    string
		changed []byte
		want    string
	}{
		{"same size other bytes", tgz(t, file("bin/containerd", 0o755, "evil binary"), file("bin/ctr", 0o755, "ctr")),
			`archive member "bin/containerd": contents changed between the check and the install`},
		{"other member", tgz(t, file("bin/ctr", 0o755, "ctr")),
			`archive member "bin/ctr": archive changed between the check and the install`},
		{"hostile entry added", tgz(t, file("bin/containerd", 0o755, "good binary"), file("../../x", 0o755, "x"), file("bin/ctr", 0o755, "ctr")),
			`archive member "../../x": unsafe name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRoot(t)
			calls := 0
			open := func() (io.ReadCloser, error) {
				calls++
				if calls == 1 {
					return fromBytes(checked)()
				}
				return fromBytes(tt.changed)()
			}
			sel := Selection{To: "/usr/local/bin", Strip: 1}
			_, err := Install(context.Background(), r.root, open, sel, Limits{})
			wantError(t, err, tt.want)
			if _, err := os.Lstat(filepath.Join(r.dir, "usr/local/bin/ctr")); !errors.Is(err, fs.ErrNotExist) && tt.name != "hostile entry added" {
				t.Errorf("ctr was written: %v", err)
			}
			if data, err := os.ReadFile(filepath.Join(r.dir, "usr/local/bin/containerd")); err == nil && string(data) != "good binary" {
				t.Errorf("containerd holds %q", data)
			}
			for p, e := range treetest.Take(t, r.dir) {
				if e.Type != "dir" && p != "usr/local/bin/containerd" {
					t.Errorf("unexpected /%s (%s)", p, e)
				}
			}
		})
	}
}

func TestInstallCanceled(t *testing.T) {
	r := newTestRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Install(ctx, r.root, fromBytes(crictlRelease(t)), Selection{To: "/usr/local/bin"}, Limits{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	assertEmpty(t, "root", r.dir)
}

// TestInstallCanceledWhileWriting cancels during the write pass: the error
// says so and no target or temporary file is left behind.
func TestInstallCanceledWhileWriting(t *testing.T) {
	r := newTestRoot(t)
	rng := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 4<<20) // incompressible, so it takes many reads
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	archive := tgz(t, file("bin/containerd", 0o755, string(big)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	open := func() (io.ReadCloser, error) {
		calls++
		if calls == 1 {
			return fromBytes(archive)()
		}
		return io.NopCloser(&cancelAfter{r: bytes.NewReader(archive), n: 1 << 20, cancel: cancel}), nil
	}
	_, err := Install(ctx, r.root, open, Selection{To: "/usr/local/bin", Strip: 1}, Limits{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	for p, e := range treetest.Take(t, r.dir) {
		if e.Type != "dir" {
			t.Errorf("left /%s (%s)", p, e)
		}
	}
}

// cancelAfter calls cancel once n bytes have been read.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n -= n; c.n <= 0 {
		c.cancel()
	}
	return n, err
}

func TestInstallOpenError(t *testing.T) {
	r := newTestRoot(t)
	open := func() (io.ReadCloser, error) { return nil, fs.ErrNotExist }
	_, err := Install(context.Background(), r.root, open, Selection{To: "/usr/local/bin"}, Limits{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want fs.ErrNotExist", err)
	}
}

func TestPlanReadError(t *testing.T) {
	data := containerdRelease(t)
	boom := errors.New("disk on fire")
	r := io.MultiReader(bytes.NewReader(data[:len(data)/2]), iotestErr{boom})
	_, err := Plan(r, Selection{To: "/x"}, Limits{})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want it to wrap %v", err, boom)
	}
	var ae *Error
	if errors.As(err, &ae) {
		t.Errorf("a read error is reported as an archive error: %v", err)
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

func TestSelectionErrors(t *testing.T) {
	tests := []struct {
		name string
		sel  Selection
		want string
	}{
		{"nothing", Selection{}, "set Files (member to target) or To"},
		{"both", Selection{Files: map[string]string{"a": "/a"}, To: "/x"}, "set Files or To, not both"},
		{"strip with files", Selection{Files: map[string]string{"a": "/a"}, Strip: 1}, "Include and Strip apply to To"},
		{"include with files", Selection{Files: map[string]string{"a": "/a"}, Include: []string{"a"}}, "Include and Strip apply to To"},
		{"negative strip", Selection{To: "/x", Strip: -1}, "strip -1 is not between 0 and 64"},
		{"relative to", Selection{To: "opt/cni"}, `target path "opt/cni" is not absolute`},
		{"relative target", Selection{Files: map[string]string{"a": "usr/bin/a"}}, `target path "usr/bin/a" is not absolute`},
		{"root target", Selection{Files: map[string]string{"a": "/"}}, `target is the root directory`},
		{"member with dotdot", Selection{Files: map[string]string{"../a": "/a"}}, `archive member "../a": invalid selection: path has a ".." component`},
		{"absolute member", Selection{Files: map[string]string{"/a": "/a"}}, `archive member "/a": invalid selection: absolute path`},
		{"root member", Selection{Files: map[string]string{"./": "/a"}}, `names the archive root`},
		{"include with dotdot", Selection{To: "/x", Include: []string{"a/../../b"}}, `path has a ".." component`},
		{"member twice", Selection{Files: map[string]string{"./bridge": "/a", "bridge": "/b"}}, `"bridge": invalid selection: member listed twice`},
		{"same target", Selection{Files: map[string]string{"a": "/bin/x", "b": "/bin/x"}}, `"a" is also installed at /bin/x`},
		{"nested targets", Selection{Files: map[string]string{"a": "/bin/x", "b": "/bin/x/y"}}, `target /bin/x/y is inside /bin/x, the target of "a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Plan(bytes.NewReader(crictlRelease(t)), tt.sel, Limits{})
			wantError(t, err, tt.want)
		})
	}
}

func TestLimitsErrors(t *testing.T) {
	_, err := Plan(bytes.NewReader(crictlRelease(t)), Selection{To: "/x"}, Limits{MaxMembers: -1})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("negative values are not allowed")) {
		t.Fatalf("got %v", err)
	}
}

func TestCleanName(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"bin/containerd", "bin/containerd", ""},
		{"./bridge", "bridge", ""},
		{"././a//b/", "a/b", ""},
		{"./", ".", ""},
		{"a/./b", "a/b", ""},
		{"..a/b..", "..a/b..", ""},
		{"", "", "empty name"},
		{"a\x00b", "", "NUL"},
		{"/etc/passwd", "", "absolute path"},
		{"../../etc/passwd", "", `".." component`},
		{"bin/../../x", "", `".." component`},
		{"bin/../ctr", "", `".." component`},
		{"a/..", "", `".." component`},
		{string(bytes.Repeat([]byte("a"), maxNameLen+1)), "", "longer than 1024 bytes"},
	}
	for _, tt := range tests {
		got, err := cleanName(tt.in)
		if tt.err != "" {
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.err)) {
				t.Errorf("cleanName(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("cleanName(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestInstallPlannedReadsOnce: given Plan's result, installing reads the
// archive once, and not at all when every target already matches.
func TestInstallPlannedReadsOnce(t *testing.T) {
	data := containerdRelease(t)
	sel := Selection{To: "/usr/local/bin", Strip: 1}
	planned, err := Plan(bytes.NewReader(data), sel, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	r := newTestRoot(t)
	opens := 0
	open := func() (io.ReadCloser, error) { opens++; return fromBytes(data)() }
	got, err := InstallPlanned(context.Background(), r.root, open, sel, Limits{}, planned)
	if err != nil {
		t.Fatal(err)
	}
	if opens != 1 || len(got) != len(planned) {
		t.Fatalf("first install: %d opens, %d members; want 1 open, %d members", opens, len(got), len(planned))
	}
	for _, m := range got {
		if m.Unchanged {
			t.Errorf("%s reported unchanged on an empty root", m.Target)
		}
	}
	opens = 0
	got, err = InstallPlanned(context.Background(), r.root, open, sel, Limits{}, planned)
	if err != nil {
		t.Fatal(err)
	}
	if opens != 0 {
		t.Errorf("second install opened the archive %d times, want 0", opens)
	}
	for _, m := range got {
		if !m.Unchanged {
			t.Errorf("%s rewritten on the second install", m.Target)
		}
	}
}
