package preflight

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
)

const (
	cpuinfoVMX  = "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr vmx lm\n\nprocessor\t: 1\nflags\t\t: fpu vme de pse tsc msr vmx lm\n"
	cpuinfoSVM  = "processor\t: 0\nflags\t\t: fpu svm lm\n"
	cpuinfoNone = "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr hypervisor lm\n"
)

// kvmOK is what a working /dev/kvm answers.
var kvmOK = host.KVM{Path: "/dev/kvm", Exists: true, APIVersion: 12, CreatedVM: true}

// kataFake is a healthy fake host for Kata: the CPU has vmx, /dev/kvm
// works and the vhost modules are built in.
func kataFake(t *testing.T) *fake {
	f := newFake(t)
	f.hostFile("proc/cpuinfo", cpuinfoVMX)
	f.hostGzip("proc/config.gz", fullConfig(map[string]string{"VHOST": "y", "VHOST_NET": "y", "VHOST_VSOCK": "y"}))
	f.host.KVM = func() host.KVM { return kvmOK }
	f.host.Arch = "amd64"
	return f
}

func kataReport(t *testing.T, f *fake) *Report {
	t.Helper()
	live := true
	rep, err := Sysinfo(context.Background(), Options{RootDir: f.root, Live: &live, Host: f.host, Kata: true})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestKataProbes(t *testing.T) {
	tests := []struct {
		name   string
		change func(f *fake)
		probe  string
		status Status
		want   string
	}{
		{"healthy kvm", nil, "kata.kvm", StatusPass, "KVM usable: /dev/kvm API version 12, KVM_CREATE_VM works, CPU flag vmx"},
		{"vmx", nil, "kata.cpu-virtualization", StatusPass, "vmx flag in"},
		{"svm", func(f *fake) { f.hostFile("proc/cpuinfo", cpuinfoSVM) }, "kata.cpu-virtualization", StatusPass, "svm flag"},
		{"no flag", func(f *fake) { f.hostFile("proc/cpuinfo", cpuinfoNone) }, "kata.cpu-virtualization", StatusFail, "no vmx or svm flag in "},
		{"no /dev/kvm", func(f *fake) {
			f.host.KVM = func() host.KVM {
				return host.KVM{Path: "/dev/kvm", Err: &os.PathError{Op: "open", Path: "/dev/kvm", Err: syscall.ENOENT}}
			}
		}, "kata.kvm", StatusFail, "KVM not usable: /dev/kvm does not exist"},
		{"no permission", func(f *fake) {
			f.host.KVM = func() host.KVM {
				return host.KVM{Path: "/dev/kvm", Exists: true, Err: &os.PathError{Op: "open", Path: "/dev/kvm", Err: syscall.EACCES}}
			}
		}, "kata.kvm", StatusFail, "KVM not usable: open /dev/kvm: permission denied"},
		{"create vm fails", func(f *fake) {
			f.host.KVM = func() host.KVM {
				return host.KVM{Path: "/dev/kvm", Exists: true, APIVersion: 12, Err: errors.New("/dev/kvm exists but KVM_CREATE_VM failed: device or resource busy")}
			}
		}, "kata.kvm", StatusFail, "KVM not usable: /dev/kvm exists but KVM_CREATE_VM failed: device or resource busy"},
		{"kvm without hardware virtualization", func(f *fake) {
			f.hostFile("proc/cpuinfo", cpuinfoNone)
			f.write(filepath.Join(f.dir, "sys/module/kvm_pvm/parameters/x"), "", 0o644)
		}, "kata.kvm", StatusFail, "KVM not usable: /dev/kvm answers (API version 12, KVM_CREATE_VM works) but there is no vmx or svm flag in " + "%PROC%/cpuinfo: this KVM (kvm_pvm) is not backed by hardware virtualization"},
		{"arm64 has no flags to check", func(f *fake) { f.host.Arch = "arm64"; f.hostFile("proc/cpuinfo", "Features\t: fp asimd\n") },
			"kata.kvm", StatusPass, "KVM usable: /dev/kvm API version 12, KVM_CREATE_VM works"},
		{"vhost_vsock builtin", nil, "kata.module.vhost_vsock", StatusPass, "CONFIG_VHOST_VSOCK=y builtin"},
		{"vhost_net not in a kernel without modules", func(f *fake) {
			f.hostGzip("proc/config.gz", fullConfig(map[string]string{"VHOST": "y", "VHOST_NET": "n", "VHOST_VSOCK": "m"}))
		}, "kata.module.vhost_net", StatusFail, "vhost_net missing: the kernel has no module support and CONFIG_VHOST_NET is not set in"},
		{"vhost_vsock =m without module support", func(f *fake) {
			f.hostGzip("proc/config.gz", fullConfig(map[string]string{"VHOST": "y", "VHOST_NET": "y", "VHOST_VSOCK": "m"}))
		}, "kata.module.vhost_vsock", StatusFail, "CONFIG_VHOST_VSOCK is =m (a module the kernel cannot load)"},
		{"vhost_net loaded", func(f *fake) {
			f.withModules()
			f.hostFile("proc/modules", "vhost_net 36864 0 - Live 0x0\nvhost 57344 1 vhost_net, Live 0x0\n")
		}, "kata.module.vhost_net", StatusPass, "vhost_net loaded"},
		{"vhost_vsock loadable", func(f *fake) {
			f.withModules()
			f.hostFile(filepath.Join("lib/modules", testRelease, "modules.dep"), "kernel/drivers/vhost/vhost_vsock.ko.xz: kernel/drivers/vhost/vhost.ko.xz\n")
		}, "kata.module.vhost_vsock", StatusPass, "vhost_vsock loadable"},
		{"vhost_vsock nowhere", func(f *fake) { f.withModules() }, "kata.module.vhost_vsock", StatusFail, "vhost_vsock missing: not loaded, not built in, and not in modules.dep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := kataFake(t)
			if tt.change != nil {
				tt.change(f)
			}
			rep := kataReport(t, f)
			want := strings.ReplaceAll(tt.want, "%PROC%", f.host.ProcDir)
			expect(t, rep, tt.probe, tt.status, want)
			if r := result(t, rep, tt.probe); !r.Required {
				t.Errorf("%s is advisory; Kata probes of sysinfo --kata are required", tt.probe)
			}
		})
	}
}

// TestKataProbesFollowTheSpec: no Kata probes without Kata, advisory
// ones when the spec only installs it, required ones (failing the run)
// with a kata runtime handler; offline they are deferred.
func TestKataProbesFollowTheSpec(t *testing.T) {
	f := kataFake(t)
	f.hostFile("proc/cpuinfo", cpuinfoNone)
	kata := &spec.KataComponent{Release: spec.Release{Version: "3.32.0"}}
	handler := &spec.Containerd{Runtimes: map[string]spec.Runtime{"kata": {Type: spec.KataRuntimeType}}}

	env := f.env(true)
	actions, err := Stage{Host: f.host}.Plan(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range actions {
		if strings.HasPrefix(a.Resource, "probe kata.") {
			t.Errorf("%s runs for a spec without Kata", a.Resource)
		}
	}

	env = f.env(true)
	env.Spec.Components.Kata = kata
	if _, err := (Stage{Host: f.host}).Plan(context.Background(), env); err != nil {
		t.Fatalf("advisory Kata probes failed the run: %v", err)
	}
	if w := strings.Join(env.Warnings(), "\n"); !strings.Contains(w, "preflight kata.kvm failed (advisory): KVM not usable") {
		t.Errorf("warnings %q lack the advisory kata.kvm failure", w)
	}

	env = f.env(true)
	env.Spec.Containerd = handler
	_, err = Stage{Host: f.host}.Plan(context.Background(), env)
	var fe *FailedError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "kata.kvm: KVM not usable") || !strings.Contains(err.Error(), "kata.cpu-virtualization: no vmx or svm flag") {
		t.Fatalf("Plan error = %v; want the required Kata probes failing", err)
	}

	env = f.env(false)
	env.Spec.Containerd = handler
	actions, err = Stage{Host: f.host}.Plan(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, a := range actions {
		if strings.HasPrefix(a.Resource, "probe kata.") {
			n++
			if !strings.HasPrefix(a.Detail, "deferred") {
				t.Errorf("offline %s = %s", a.Resource, a.Detail)
			}
		}
	}
	if n != 5 {
		t.Errorf("%d Kata probes offline, want 5", n)
	}
}

func TestVirtFlags(t *testing.T) {
	for in, want := range map[string]string{
		cpuinfoVMX:  "vmx",
		cpuinfoSVM:  "svm",
		cpuinfoNone: "",
		"model name\t: Intel vmx svm\nflags\t: sse2\n": "", // only flags lines count
		"":                       "",
		"flags : svm vmx svm\n":  "svm vmx",
		"Features\t: fp asimd\n": "", // arm64 has no such flag: KVM decides
	} {
		if got := strings.Join(VirtFlags([]byte(in)), " "); got != want {
			t.Errorf("VirtFlags(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestKataProbesOnThisMachine runs the Kata probes against the real host
// and checks the verdict against what /proc/cpuinfo and /dev/kvm offer,
// computed here independently of the probe code.
func TestKataProbesOnThisMachine(t *testing.T) {
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Fatal(err)
	}
	hasFlag := strings.Contains(" "+strings.Join(strings.Fields(string(cpuinfo)), " ")+" ", " vmx ") ||
		strings.Contains(" "+strings.Join(strings.Fields(string(cpuinfo)), " ")+" ", " svm ")
	_, statErr := os.Stat("/dev/kvm")
	live := true
	rep, err := Sysinfo(context.Background(), Options{Live: &live, Kata: true})
	if err != nil {
		t.Fatal(err)
	}
	kvm := result(t, rep, "kata.kvm")
	virt := result(t, rep, "kata.cpu-virtualization")
	t.Logf("this machine: /dev/kvm present %v, vmx/svm %v", statErr == nil, hasFlag)
	t.Logf("kata.cpu-virtualization: %s: %s", virt.Status, virt.Message)
	t.Logf("kata.kvm: %s: %s", kvm.Status, kvm.Message)
	if runtime.GOARCH != "amd64" {
		hasFlag = true // only amd64 announces it; kata.kvm alone decides
	}
	if (virt.Status == StatusPass) != hasFlag {
		t.Errorf("kata.cpu-virtualization = %s, but vmx/svm in /proc/cpuinfo is %v", virt.Status, hasFlag)
	}
	switch {
	case statErr != nil:
		if kvm.Status != StatusFail || !strings.Contains(kvm.Message, "KVM not usable: /dev/kvm does not exist") {
			t.Errorf("no /dev/kvm here, but kata.kvm = %s %q", kvm.Status, kvm.Message)
		}
	case !hasFlag:
		if kvm.Status != StatusFail || !strings.Contains(kvm.Message, "KVM not usable") || !strings.Contains(kvm.Message, "no vmx or svm flag") && !strings.Contains(kvm.Message, "KVM_CREATE_VM failed") {
			t.Errorf("/dev/kvm without vmx/svm here, but kata.kvm = %s %q", kvm.Status, kvm.Message)
		}
	default:
		if k := host.ProbeKVM("/dev/kvm"); (kvm.Status == StatusPass) != (k.Err == nil) {
			t.Errorf("kata.kvm = %s %q, but the device answers %+v", kvm.Status, kvm.Message, k)
		}
	}
}
