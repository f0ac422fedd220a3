package preflight

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBinaries(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(f *fake)
		probe  string
		status Status
		want   string
	}{
		{"found", func(f *fake) {}, "binary.mount", StatusPass, "found /usr/bin/mount"},
		{"sbin before bin", func(f *fake) { f.rootExec("usr/sbin/umount") }, "binary.umount", StatusPass, "found /usr/sbin/umount"},
		{"missing", func(f *fake) { os.Remove(filepath.Join(f.root, "usr/bin/mount")) }, "binary.mount", StatusFail, "mount not found in /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin (root "},
		{
			"not executable",
			func(f *fake) { f.rootFile("usr/bin/mount", "data") },
			"binary.mount", StatusFail, "mount not found",
		},
		{
			"a directory is not a binary",
			func(f *fake) {
				os.Remove(filepath.Join(f.root, "usr/bin/umount"))
				os.MkdirAll(filepath.Join(f.root, "bin/umount"), 0o755)
			},
			"binary.umount", StatusFail, "umount not found",
		},
		{
			"symlink inside the root",
			func(f *fake) {
				os.Remove(filepath.Join(f.root, "usr/bin/mount"))
				f.rootExec("usr/lib/util-linux/mount")
				os.Symlink("/usr/lib/util-linux/mount", filepath.Join(f.root, "usr/bin/mount"))
			},
			"binary.mount", StatusPass, "found /usr/bin/mount",
		},
		{
			"merged /usr through a /bin symlink",
			func(f *fake) {
				os.Remove(filepath.Join(f.root, "usr/bin/mount"))
				f.rootExec("usr/lib/bin/mount")
				os.Symlink("usr/lib/bin", filepath.Join(f.root, "bin"))
			},
			"binary.mount", StatusPass, "found /bin/mount",
		},
		{
			"symlink out of the root stays inside it",
			func(f *fake) {
				os.Remove(filepath.Join(f.root, "usr/bin/mount"))
				// The host has /bin/sh; inside the root it does not exist.
				os.Symlink("/bin/sh", filepath.Join(f.root, "usr/bin/mount"))
			},
			"binary.mount", StatusFail, "mount not found",
		},
		{
			"nft instead of iptables",
			func(f *fake) {
				os.Remove(filepath.Join(f.root, "usr/sbin/iptables"))
				f.rootExec("usr/sbin/nft")
			},
			"binary.iptables-or-nft", StatusPass, "found /usr/sbin/nft (no iptables)",
		},
		{
			"neither iptables nor nft",
			func(f *fake) { os.Remove(filepath.Join(f.root, "usr/sbin/iptables")) },
			"binary.iptables-or-nft", StatusWarn, "iptables or nft not found",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			tt.setup(f)
			rep := f.sysinfo(true)
			expect(t, rep, tt.probe, tt.status, tt.want)
		})
	}
}

func TestLocalhost(t *testing.T) {
	tests := []struct {
		name   string
		hosts  *string // nil: no /etc/hosts
		live   bool
		status Status
		want   string
	}{
		{"ipv4 and ipv6", ptr(hostsOK), true, StatusPass, "localhost -> 127.0.0.1, ::1 (/etc/hosts)"},
		{"alias on the line", ptr("127.0.1.1 vm\n127.0.0.1   localhost.localdomain LOCALHOST # comment\n"), true, StatusPass, "localhost -> 127.0.0.1"},
		{"ipv6 only", ptr("::1 localhost\n"), true, StatusPass, "::1"},
		{"other loopback address", ptr("127.0.0.53 localhost\n"), true, StatusPass, "127.0.0.53"},
		{"no localhost", ptr("127.0.0.1 vm\n10.0.0.5 node1\n"), true, StatusFail, "no localhost entry in /etc/hosts"},
		{"commented out", ptr("#127.0.0.1 localhost\n"), true, StatusFail, "no localhost entry"},
		{"not loopback", ptr("10.0.0.5 localhost\n"), true, StatusFail, "localhost -> 10.0.0.5 in /etc/hosts: not a loopback address"},
		{"empty", ptr(""), true, StatusFail, "no localhost entry"},
		{"missing live", nil, true, StatusFail, "/etc/hosts missing"},
		{"missing offline", nil, false, StatusWarn, "missing in the image"},
		{"offline without localhost", ptr("127.0.1.1 image\n"), false, StatusFail, "no localhost entry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			if tt.hosts == nil {
				os.Remove(filepath.Join(f.root, "etc/hosts"))
			} else {
				f.rootFile("etc/hosts", *tt.hosts)
			}
			rep := f.sysinfo(tt.live)
			expect(t, rep, "network.localhost", tt.status, tt.want)
			if r := result(t, rep, "network.localhost"); !r.Required {
				t.Error("network.localhost should be required")
			}
		})
	}
}

func TestMachineID(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef"
	tests := []struct {
		name    string
		content *string
		live    bool
		status  Status
		want    string
	}{
		{"valid live", ptr(id + "\n"), true, StatusPass, "present"},
		{"missing live", nil, true, StatusWarn, "missing"},
		{"uninitialized live", ptr("uninitialized\n"), true, StatusWarn, "not initialised"},
		{"invalid live", ptr("0123456789ABCDEF0123456789ABCDEF\n"), true, StatusWarn, "not 32 lowercase hex"},
		{"all zeros", ptr("00000000000000000000000000000000\n"), true, StatusWarn, "not 32 lowercase hex"},
		{"uninitialized offline", ptr("uninitialized\n"), false, StatusPass, "generates it at first boot"},
		{"empty offline", ptr(""), false, StatusPass, "first boot"},
		{"missing offline", nil, false, StatusPass, "first boot"},
		{"baked into the image", ptr(id + "\n"), false, StatusWarn, "every clone would share it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			if tt.content == nil {
				os.Remove(filepath.Join(f.root, "etc/machine-id"))
			} else {
				f.rootFile("etc/machine-id", *tt.content)
			}
			rep := f.sysinfo(tt.live)
			expect(t, rep, "machine-id", tt.status, tt.want)
			if r := result(t, rep, "machine-id"); r.Required {
				t.Error("machine-id should be advisory")
			}
			for _, r := range rep.Probes {
				if strings.Contains(r.Message, id) {
					t.Errorf("%s prints the machine id: %q", r.Name, r.Message)
				}
			}
		})
	}
}
