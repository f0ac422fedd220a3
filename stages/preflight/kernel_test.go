package preflight

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestKernelRelease(t *testing.T) {
	tests := []struct {
		release string
		status  Status
		want    string
	}{
		{"6.18.44-fc-v445", StatusPass, "found 6.18.44-fc-v445"},
		{"4.19.0-27-amd64", StatusPass, "found 4.19.0"},
		{"5.4", StatusPass, "found 5.4"},
		{"4.14.336", StatusWarn, "4.19 or newer is recommended"},
		{"4.4.302-generic", StatusWarn, "4.19 or newer"},
		{"3.10.0-1160.el7.x86_64", StatusFail, "at least a 4.x kernel"},
		{"6", StatusWarn, "cannot compare"},
		{"x.y", StatusWarn, "cannot compare"},
	}
	for _, tt := range tests {
		t.Run(tt.release, func(t *testing.T) {
			f := newFake(t)
			f.host.Release = tt.release
			expect(t, f.sysinfo(true), "kernel.release", tt.status, tt.want)
		})
	}
}

func TestKernelConfigSources(t *testing.T) {
	bootConfig := filepath.Join("boot", "config-"+testRelease)
	modulesConfig := filepath.Join("lib/modules", testRelease, "config")
	tests := []struct {
		name   string
		setup  func(f *fake)
		status Status
		want   string
		// children says whether the per-option probes run.
		children bool
	}{
		{
			name:     "proc config.gz",
			setup:    func(f *fake) {},
			status:   StatusPass,
			want:     "proc/config.gz",
			children: true,
		},
		{
			name: "boot config",
			setup: func(f *fake) {
				f.remove("proc/config.gz")
				f.hostFile(bootConfig, fullConfig(nil))
			},
			status:   StatusPass,
			want:     "config-" + testRelease,
			children: true,
		},
		{
			name: "lib modules config",
			setup: func(f *fake) {
				f.remove("proc/config.gz")
				f.hostFile(modulesConfig, fullConfig(nil))
			},
			status:   StatusPass,
			want:     modulesConfig,
			children: true,
		},
		{
			name: "config.gz wins over boot",
			setup: func(f *fake) {
				f.hostFile(bootConfig, fullConfig(map[string]string{"OVERLAY_FS": ""}))
			},
			status:   StatusPass,
			want:     "proc/config.gz",
			children: true,
		},
		{
			name: "boot config of another release is not used",
			setup: func(f *fake) {
				f.remove("proc/config.gz")
				f.hostFile("boot/config-5.10.0-other", fullConfig(nil))
			},
			status: StatusWarn,
			want:   "no kernel config in",
		},
		{
			name:   "no config at all",
			setup:  func(f *fake) { f.remove("proc/config.gz") },
			status: StatusWarn,
			want:   "kernel options not checked",
		},
		{
			name:   "corrupt config.gz",
			setup:  func(f *fake) { f.hostFile("proc/config.gz", "not gzip") },
			status: StatusWarn,
			want:   "kernel options not checked",
		},
		{
			name:   "not a config",
			setup:  func(f *fake) { f.hostGzip("proc/config.gz", "hello\n") },
			status: StatusWarn,
			want:   "not a kernel config",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			tt.setup(f)
			rep := f.sysinfo(true)
			expect(t, rep, "kernel.config", tt.status, tt.want)
			if got := has(rep, "kernel.config.CONFIG_OVERLAY_FS"); got != tt.children {
				t.Errorf("option probes ran = %v, want %v", got, tt.children)
			}
			if !rep.OK {
				t.Errorf("a missing kernel config must not fail the report: %v", rep.Failed())
			}
		})
	}
}

func TestKernelConfigOptions(t *testing.T) {
	tests := []struct {
		name     string
		override map[string]string
		probe    string
		status   Status
		want     string
	}{
		{"builtin", nil, "kernel.config.CONFIG_BRIDGE_NETFILTER", StatusPass, "CONFIG_BRIDGE_NETFILTER=y builtin"},
		{"module", map[string]string{"OVERLAY_FS": "m"}, "kernel.config.CONFIG_OVERLAY_FS", StatusPass, "CONFIG_OVERLAY_FS=m module"},
		{"not set", map[string]string{"OVERLAY_FS": "n"}, "kernel.config.CONFIG_OVERLAY_FS", StatusFail, "missing (not set): needed for overlayfs"},
		{"absent", map[string]string{"VETH": ""}, "kernel.config.CONFIG_VETH", StatusFail, "missing (not in config)"},
		{
			"alias provides it",
			map[string]string{"IP_NF_TARGET_MASQUERADE": "", "NETFILTER_XT_TARGET_MASQUERADE": "m"},
			"kernel.config.CONFIG_IP_NF_TARGET_MASQUERADE", StatusPass,
			"CONFIG_IP_NF_TARGET_MASQUERADE not set; provided by CONFIG_NETFILTER_XT_TARGET_MASQUERADE=m module",
		},
		{
			"neither option nor alias",
			map[string]string{"CGROUP_DEVICE": "n"},
			"kernel.config.CONFIG_CGROUP_DEVICE", StatusFail, "not set, nor CONFIG_CGROUP_BPF",
		},
		{
			"advisory missing",
			map[string]string{"NETFILTER_XT_MATCH_IPVS": ""},
			"kernel.config.CONFIG_NETFILTER_XT_MATCH_IPVS", StatusFail, "kube-proxy IPVS mode",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.hostGzip("proc/config.gz", fullConfig(tt.override))
			rep := f.sysinfo(true)
			expect(t, rep, tt.probe, tt.status, tt.want)
			r := result(t, rep, tt.probe)
			if wantOK := tt.status != StatusFail || !r.Required; rep.OK != wantOK {
				t.Errorf("report OK = %v, want %v", rep.OK, wantOK)
			}
		})
	}
}

func TestConfigOptionsRequiredSplit(t *testing.T) {
	required := map[string]bool{}
	for _, o := range configOptions() {
		if o.why == "" {
			t.Errorf("CONFIG_%s has no reason", o.name)
		}
		required[o.name] = o.required
	}
	// The options the brief and runc's check-config call necessary must
	// stay required.
	for _, name := range strings.Fields(`NAMESPACES NET_NS PID_NS IPC_NS UTS_NS CGROUPS CGROUP_CPUACCT
		CGROUP_DEVICE CGROUP_FREEZER CGROUP_SCHED CPUSETS MEMCG KEYS VETH BRIDGE BRIDGE_NETFILTER
		IP_NF_FILTER IP_NF_TARGET_MASQUERADE NETFILTER_XT_MATCH_ADDRTYPE NETFILTER_XT_MATCH_CONNTRACK
		NF_NAT OVERLAY_FS POSIX_MQUEUE`) {
		if !required[name] {
			t.Errorf("CONFIG_%s should be required", name)
		}
	}
	if required["NETFILTER_XT_MATCH_IPVS"] {
		t.Error("CONFIG_NETFILTER_XT_MATCH_IPVS should be advisory")
	}
}

func TestParseKernelConfig(t *testing.T) {
	got, err := parseKernelConfig([]byte(`#
# Linux/x86 6.1.0 Kernel Configuration
#
CONFIG_CC_VERSION_TEXT="gcc (Debian 12.2.0-14) 12.2.0"
CONFIG_OVERLAY_FS=m
CONFIG_VETH=y
# CONFIG_MODULES is not set
# comment CONFIG_X=y
CONFIG_NR_CPUS=64

`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"CONFIG_CC_VERSION_TEXT": `"gcc (Debian 12.2.0-14) 12.2.0"`,
		"CONFIG_OVERLAY_FS":      "m",
		"CONFIG_VETH":            "y",
		"CONFIG_MODULES":         "n",
		"CONFIG_NR_CPUS":         "64",
	}
	if len(got) != len(want) {
		t.Errorf("parsed %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestModules(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(f *fake)
		status Status
		want   string
		// modprobe is the binary.modprobe outcome.
		modprobe     Status
		modprobeWant string
	}{
		{
			name:         "no module support",
			setup:        func(f *fake) {},
			status:       StatusPass,
			want:         "kernel has no module support: all modules builtin",
			modprobe:     StatusPass,
			modprobeWant: "not needed",
		},
		{
			name:         "modules installed, modprobe present",
			setup:        func(f *fake) { f.withModules(); f.rootExec("usr/sbin/modprobe") },
			status:       StatusPass,
			want:         "module support; modules for " + testRelease,
			modprobe:     StatusPass,
			modprobeWant: "found /usr/sbin/modprobe",
		},
		{
			name:         "modules installed, modprobe missing",
			setup:        func(f *fake) { f.withModules() },
			status:       StatusPass,
			want:         "module support",
			modprobe:     StatusFail,
			modprobeWant: "modprobe not found in /usr/local/sbin:",
		},
		{
			name: "module support without modules directory",
			setup: func(f *fake) {
				f.withModules()
				f.remove("lib/modules")
				f.rootExec("sbin/modprobe")
			},
			status:       StatusWarn,
			want:         "modules.dep is missing",
			modprobe:     StatusPass,
			modprobeWant: "found /sbin/modprobe",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			tt.setup(f)
			rep := f.sysinfo(true)
			expect(t, rep, "kernel.modules", tt.status, tt.want)
			expect(t, rep, "binary.modprobe", tt.modprobe, tt.modprobeWant)
		})
	}
}
