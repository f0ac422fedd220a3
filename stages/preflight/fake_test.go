package preflight

import (
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeprov/nodeprov/stages/host"
)

// Mount tables of the three cgroup layouts, as the kernel prints them.
const (
	mountsBase = `22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
`
	mountsV1 = mountsBase + `31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
`
	mountsHybrid = mountsV1 + `41 31 0:38 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate
`
	mountsV2 = mountsBase + `31 23 0:28 / /sys/fs/cgroup rw,nosuid,nodev,noexec shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`
	procCgroupsV1 = `#subsys_name	hierarchy	num_cgroups	enabled
cpuset	3	1	1
cpu	1	1	1
cpuacct	1	1	1
blkio	7	1	1
memory	4	27	1
devices	5	1	1
freezer	6	1	1
net_cls	0	1	1
pids	8	1	1
`
	hostsOK     = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n"
	testRelease = "6.1.0-test"
)

// fake is a fake host (/proc, /sys, /boot, /lib/modules) next to a fake
// target root. newFake makes a healthy cgroup v2 host without module
// support, with every kernel option built in and the usual binaries.
type fake struct {
	t    *testing.T
	dir  string
	root string
	host Host
	free uint64
}

func newFake(t *testing.T) *fake {
	t.Helper()
	dir := t.TempDir()
	f := &fake{t: t, dir: dir, root: filepath.Join(dir, "root"), free: 50 << 30}
	f.host = Host{
		ProcDir:    filepath.Join(dir, "proc"),
		SysDir:     filepath.Join(dir, "sys"),
		BootDir:    filepath.Join(dir, "boot"),
		ModulesDir: filepath.Join(dir, "lib/modules"),
		Release:    testRelease,
		DiskFree:   func(string) (uint64, error) { return f.free, nil },
	}
	f.hostFile("proc/self/mountinfo", mountsV2)
	f.hostFile("proc/cgroups", procCgroupsV1)
	f.hostFile("proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n")
	f.hostFile("sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n")
	f.hostGzip("proc/config.gz", fullConfig(nil))
	f.rootFile("etc/hosts", hostsOK)
	f.rootFile("etc/machine-id", "0123456789abcdef0123456789abcdef\n")
	f.rootExec("usr/bin/mount")
	f.rootExec("usr/bin/umount")
	f.rootExec("usr/sbin/iptables")
	if err := os.MkdirAll(filepath.Join(f.root, "var/lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	return f
}

// fullConfig is a kernel config with every option of the list built in,
// except those overridden: a value of "" drops the line, "n" writes
// "# CONFIG_X is not set".
func fullConfig(override map[string]string) string {
	var b strings.Builder
	b.WriteString("#\n# Automatically generated file; DO NOT EDIT.\n#\nCONFIG_LOCALVERSION=\"-test\"\n")
	seen := map[string]bool{}
	write := func(name, v string) {
		switch v {
		case "":
		case "n":
			b.WriteString("# CONFIG_" + name + " is not set\n")
		default:
			b.WriteString("CONFIG_" + name + "=" + v + "\n")
		}
	}
	for _, o := range configOptions() {
		seen[o.name] = true
		v, ok := override[o.name]
		if !ok {
			v = "y"
		}
		write(o.name, v)
	}
	for name, v := range override {
		if !seen[name] {
			write(name, v)
		}
	}
	return b.String()
}

func (f *fake) write(p, data string, mode os.FileMode) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		f.t.Fatal(err)
	}
	// WriteFile keeps the mode of a file that exists.
	if err := os.Chmod(p, mode); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fake) hostFile(rel, data string) { f.write(filepath.Join(f.dir, rel), data, 0o644) }
func (f *fake) rootFile(rel, data string) { f.write(filepath.Join(f.root, rel), data, 0o644) }
func (f *fake) rootExec(rel string)       { f.write(filepath.Join(f.root, rel), "#!/bin/sh\n", 0o755) }

func (f *fake) remove(rel string) {
	f.t.Helper()
	if err := os.RemoveAll(filepath.Join(f.dir, rel)); err != nil {
		f.t.Fatal(err)
	}
}

// hostGzip writes a gzip-compressed file, as /proc/config.gz is.
func (f *fake) hostGzip(rel, data string) {
	f.t.Helper()
	p := filepath.Join(f.dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	out, err := os.Create(p)
	if err != nil {
		f.t.Fatal(err)
	}
	zw := gzip.NewWriter(out)
	if _, err := zw.Write([]byte(data)); err != nil {
		f.t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		f.t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		f.t.Fatal(err)
	}
}

// withModules gives the fake kernel module support and installed modules.
func (f *fake) withModules() {
	f.hostFile("proc/modules", "overlay 151552 0 - Live 0x0000000000000000\n")
	f.hostFile(filepath.Join("lib/modules", testRelease, "modules.dep"), "kernel/fs/overlayfs/overlay.ko:\n")
}

// sysinfo runs the probes over the fake, live unless told otherwise.
func (f *fake) sysinfo(live bool, ignore ...string) *Report {
	f.t.Helper()
	rep, err := Sysinfo(context.Background(), Options{RootDir: f.root, Live: &live, Host: f.host, Ignore: ignore})
	if err != nil {
		f.t.Fatalf("Sysinfo: %v", err)
	}
	return rep
}

// kernel is a host.Kernel over the fake's paths, for plan.Env.
func (f *fake) kernel() *host.Kernel {
	return &host.Kernel{ProcDir: f.host.ProcDir, SysDir: f.host.SysDir, ModulesDir: f.host.ModulesDir, Release: testRelease}
}

// result returns the named probe's result, failing the test when absent.
func result(t *testing.T, rep *Report, name string) ProbeResult {
	t.Helper()
	for _, r := range rep.Probes {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no result for probe %s; have %v", name, names(rep))
	return ProbeResult{}
}

// has reports whether the report includes the named probe.
func has(rep *Report, name string) bool {
	for _, r := range rep.Probes {
		if r.Name == name {
			return true
		}
	}
	return false
}

func names(rep *Report) []string {
	var out []string
	for _, r := range rep.Probes {
		out = append(out, r.Name)
	}
	return out
}

// expect checks a result's status and that its message contains want.
func expect(t *testing.T, rep *Report, name string, status Status, want string) {
	t.Helper()
	r := result(t, rep, name)
	if r.Status != status || !strings.Contains(r.Message, want) {
		t.Errorf("%s = %s %q; want %s containing %q", name, r.Status, r.Message, status, want)
	}
}
