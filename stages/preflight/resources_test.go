package preflight

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestProcMounted(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(f *fake)
		status Status
		want   string
	}{
		{"mounted", func(f *fake) {}, StatusPass, "proc at /proc"},
		{"no mountinfo", func(f *fake) { f.remove("proc/self") }, StatusFail, "/proc is not mounted"},
		{
			"no proc entry",
			func(f *fake) {
				f.hostFile("proc/self/mountinfo", "27 1 254:0 / / rw - ext4 /dev/vda rw\n31 27 0:28 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
			},
			StatusFail, "no proc filesystem mounted at /proc",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			tt.setup(f)
			expect(t, f.sysinfo(true), "proc.mounted", tt.status, tt.want)
		})
	}
}

func TestDisk(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(f *fake)
		free   uint64
		err    error
		status Status
		want   string
		// at is the in-root directory statfs must be asked about.
		at string
	}{
		{"plenty", func(f *fake) {}, 50 << 30, nil, StatusPass, "50.0 GiB available on /var/lib (for /var/lib/containerd)", "/var/lib"},
		{
			"containerd dir exists",
			func(f *fake) { os.MkdirAll(filepath.Join(f.root, "var/lib/containerd"), 0o711) },
			10 << 30, nil, StatusPass, "10.0 GiB available on /var/lib/containerd", "/var/lib/containerd",
		},
		{"low", func(f *fake) {}, 1 << 30, nil, StatusWarn, "1.0 GiB available on /var/lib (for /var/lib/containerd); less than 2.0 GiB", "/var/lib"},
		{"too low", func(f *fake) {}, 100 << 20, nil, StatusFail, "100.0 MiB available", "/var/lib"},
		{
			"symlinked /var is not followed",
			func(f *fake) {
				os.RemoveAll(filepath.Join(f.root, "var"))
				os.Symlink("/elsewhere", filepath.Join(f.root, "var"))
			},
			50 << 30, nil, StatusPass, "available on / (for /var/lib/containerd)", "/",
		},
		{"statfs error", func(f *fake) {}, 0, errors.New("statfs: boom"), StatusWarn, "statfs: boom", "/var/lib"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			tt.setup(f)
			var asked string
			f.host.DiskFree = func(dir string) (uint64, error) {
				asked = dir
				return tt.free, tt.err
			}
			rep := f.sysinfo(true)
			expect(t, rep, "disk.free", tt.status, tt.want)
			if want := filepath.Join(f.root, tt.at); asked != want {
				t.Errorf("statfs asked about %s, want %s", asked, want)
			}
			if !rep.OK {
				t.Errorf("disk.free is advisory and must not fail the report: %v", rep.Failed())
			}
		})
	}
}

func TestDiskStatfs(t *testing.T) {
	n, err := statfsAvail(t.TempDir())
	if err != nil || n == 0 {
		t.Fatalf("statfsAvail = %d, %v", n, err)
	}
	if _, err := statfsAvail(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("statfs of a missing directory succeeded")
	}
}

func TestSwap(t *testing.T) {
	tests := []struct {
		name   string
		swaps  *string
		status Status
		want   string
	}{
		{"off", ptr("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"), StatusPass, "off"},
		{
			"on",
			ptr("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/vda2                               partition\t2097148\t\t0\t\t-2\n/swapfile file 1048576 0 -3\n"),
			StatusWarn, "on: /dev/vda2, /swapfile (3.0 GiB); the kubelet needs failSwapOn: false",
		},
		{"unreadable", nil, StatusWarn, "read "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			if tt.swaps == nil {
				f.remove("proc/swaps")
			} else {
				f.hostFile("proc/swaps", *tt.swaps)
			}
			rep := f.sysinfo(true)
			expect(t, rep, "swap", tt.status, tt.want)
			if r := result(t, rep, "swap"); r.Required {
				t.Error("swap should be advisory")
			}
		})
	}
}

func TestHumanBytes(t *testing.T) {
	tests := []struct {
		n    uint64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{256 << 20, "256.0 MiB"},
		{3 << 30, "3.0 GiB"},
		{5 << 40, "5.0 TiB"},
	}
	for _, tt := range tests {
		if got := humanBytes(tt.n); got != tt.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}
