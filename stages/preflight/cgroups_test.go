package preflight

import (
	"strings"
	"testing"
)

func TestCgroups(t *testing.T) {
	tests := []struct {
		name        string
		mounts      string
		procCgroups string // replaces the v1 table when set
		controllers *string
		release     string
		status      Status
		want        string
		// ctrl is the cgroups.controllers outcome; "" when it must not run.
		ctrl     Status
		ctrlWant string
	}{
		{
			name:     "v2 unified",
			mounts:   mountsV2,
			status:   StatusPass,
			want:     "cgroup v2 unified (/sys/fs/cgroup)",
			ctrl:     StatusPass,
			ctrlWant: "cpu cpuset memory pids (v2)",
		},
		{
			name:     "v2 on an old kernel",
			mounts:   mountsV2,
			release:  "5.4.0-150-generic",
			status:   StatusWarn,
			want:     "older than the 5.8 recommended",
			ctrl:     StatusPass,
			ctrlWant: "(v2)",
		},
		{
			name:        "v2 without memory",
			mounts:      mountsV2,
			controllers: ptr("cpuset cpu io pids\n"),
			status:      StatusPass,
			want:        "cgroup v2",
			ctrl:        StatusFail,
			ctrlWant:    "memory not available",
		},
		{
			name:     "v1 hybrid",
			mounts:   mountsHybrid,
			status:   StatusWarn,
			want:     "cgroup v1 hybrid (unified at /sys/fs/cgroup/unified)",
			ctrl:     StatusPass,
			ctrlWant: "cpu cpuacct cpuset memory pids devices freezer (v1)",
		},
		{
			name:     "v1 legacy",
			mounts:   mountsV1,
			status:   StatusWarn,
			want:     "cgroup v1 (7 hierarchies, no unified hierarchy)",
			ctrl:     StatusPass,
			ctrlWant: "(v1)",
		},
		{
			name:        "v1 memory disabled on the command line",
			mounts:      mountsV1,
			procCgroups: strings.Replace(procCgroupsV1, "memory\t4\t27\t1", "memory\t0\t1\t0", 1),
			status:      StatusWarn,
			want:        "cgroup v1",
			ctrl:        StatusFail,
			ctrlWant:    "memory disabled",
		},
		{
			name:        "v1 pids not mounted",
			mounts:      mountsV1,
			procCgroups: strings.Replace(procCgroupsV1, "pids\t8\t1\t1", "pids\t0\t1\t1", 1),
			status:      StatusWarn,
			want:        "cgroup v1",
			ctrl:        StatusFail,
			ctrlWant:    "pids not mounted",
		},
		{
			name:        "hybrid pids on the unified hierarchy",
			mounts:      mountsHybrid,
			procCgroups: strings.Replace(procCgroupsV1, "pids\t8\t1\t1", "pids\t0\t1\t1", 1),
			controllers: ptr("pids\n"),
			status:      StatusWarn,
			want:        "hybrid",
			ctrl:        StatusPass,
			ctrlWant:    "(v1)",
		},
		{
			name:        "v1 kernel without freezer",
			mounts:      mountsV1,
			procCgroups: strings.Replace(procCgroupsV1, "freezer\t6\t1\t1\n", "", 1),
			status:      StatusWarn,
			want:        "cgroup v1",
			ctrl:        StatusFail,
			ctrlWant:    "freezer not in the kernel",
		},
		{
			name:   "nothing mounted",
			mounts: mountsBase,
			status: StatusFail,
			want:   "no cgroup filesystem mounted at /sys/fs/cgroup",
		},
		{
			name:   "v2 over-mounted by tmpfs",
			mounts: mountsV2 + "50 31 0:40 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n",
			status: StatusFail,
			want:   "no cgroup filesystem",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.hostFile("proc/self/mountinfo", tt.mounts)
			if tt.procCgroups != "" {
				f.hostFile("proc/cgroups", tt.procCgroups)
			}
			if tt.controllers != nil {
				dir := "sys/fs/cgroup/"
				if strings.Contains(tt.mounts, "/sys/fs/cgroup/unified") {
					dir += "unified/"
				}
				f.hostFile(dir+"cgroup.controllers", *tt.controllers)
			} else if strings.Contains(tt.mounts, "/sys/fs/cgroup/unified") {
				// Hybrid: the controllers all sit in v1 hierarchies.
				f.hostFile("sys/fs/cgroup/unified/cgroup.controllers", "")
			}
			if tt.release != "" {
				f.host.Release = tt.release
			}
			rep := f.sysinfo(true)
			expect(t, rep, "cgroups.version", tt.status, tt.want)
			if tt.ctrl == "" {
				if has(rep, "cgroups.controllers") {
					t.Errorf("cgroups.controllers ran after a failed detection: %+v", result(t, rep, "cgroups.controllers"))
				}
				return
			}
			expect(t, rep, "cgroups.controllers", tt.ctrl, tt.ctrlWant)
		})
	}
}

func TestParseMountinfo(t *testing.T) {
	got, err := parseMountinfo([]byte("36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n\n" +
		"41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []mount{
		{point: "/mnt two", fstype: "ext3"},
		{point: "/sys/fs/cgroup/unified", fstype: "cgroup2"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mount %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := parseMountinfo([]byte("garbage line\n")); err == nil {
		t.Error("malformed mountinfo parsed without error")
	}
}

func ptr[T any](v T) *T { return &v }
