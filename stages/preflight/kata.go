package preflight

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nodeprov/nodeprov/stages/host"
)

// Kata Containers runs every pod in a VM: its hypervisors (QEMU, Cloud
// Hypervisor, Firecracker) need a usable /dev/kvm backed by the CPU's
// hardware virtualization, and its agent and network use vhost-vsock and
// vhost-net. These probes run when the spec installs or configures Kata;
// they are required when a containerd runtime handler of type
// io.containerd.kata.v2 exists (kata-runtime check asks the same).

// kataMode says whether and how the Kata probes run.
type kataMode int

const (
	kataOff kataMode = iota
	kataAdvisory
	kataRequired
)

// kataModules are the modules Kata's runtime checks for, with the kernel
// config symbol that builds each in.
var kataModules = []struct{ name, config, why string }{
	{"vhost", "VHOST", "the vhost core that vhost_net and vhost_vsock need"},
	{"vhost_net", "VHOST_NET", "the pod network's virtio-net backend"},
	{"vhost_vsock", "VHOST_VSOCK", "the vsock channel to the Kata agent in the VM"},
}

// kataProbes are the Kata probes, required or advisory.
func kataProbes(required bool) []*probe {
	out := []*probe{
		{name: "kata.cpu-virtualization", required: required, live: true, check: checkVirtFlags},
		{name: "kata.kvm", required: required, live: true, check: checkKVM},
	}
	for _, m := range kataModules {
		out = append(out, &probe{name: "kata.module." + m.name, required: required, live: true,
			check: func(s *system) finding { return checkKataModule(s, m.name, m.config, m.why) }})
	}
	return out
}

// cpuVirtFlags returns the hardware virtualization flags /proc/cpuinfo
// lists (vmx: Intel VT-x, svm: AMD-V), and whether it could be read.
func (s *system) cpuVirtFlags() ([]string, error) {
	p := filepath.Join(s.host.ProcDir, "cpuinfo")
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return VirtFlags(data), nil
}

// VirtFlags returns the hardware virtualization flags (vmx, svm) on the
// "flags" lines of a /proc/cpuinfo, each once.
func VirtFlags(cpuinfo []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(key) != "flags" {
			continue
		}
		for _, f := range strings.Fields(val) {
			if (f == "vmx" || f == "svm") && !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	return out
}

func checkVirtFlags(s *system) finding {
	if s.host.Arch != "amd64" {
		return pass("not announced in /proc/cpuinfo on %s: kata.kvm decides", s.host.Arch)
	}
	flags, err := s.cpuVirtFlags()
	switch {
	case err != nil:
		return fail("%v", err)
	case len(flags) == 0:
		return fail("no vmx or svm flag in %s: the CPU offers no hardware virtualization to this kernel (disabled in firmware, or a VM without nested virtualization)", filepath.Join(s.host.ProcDir, "cpuinfo"))
	}
	return pass("%s flag in %s", strings.Join(flags, " and "), filepath.Join(s.host.ProcDir, "cpuinfo"))
}

// checkKVM gives the verdict on KVM for Kata: the device answers a VM
// monitor's questions, and the CPU backs it with hardware virtualization.
// Both are needed: a kernel can offer /dev/kvm without vmx/svm (a
// paravirtual backend such as kvm_pvm), which Kata's hypervisors and
// kata-runtime check do not accept.
func checkKVM(s *system) finding {
	k := s.host.KVM()
	if k.Err != nil {
		if !k.Exists {
			return fail("KVM not usable: %s does not exist (KVM not built or loaded, or not passed into this container)", k.Path)
		}
		return fail("KVM not usable: %v", k.Err)
	}
	if s.host.Arch != "amd64" {
		return pass("KVM usable: %s API version %d, KVM_CREATE_VM works", k.Path, k.APIVersion)
	}
	flags, err := s.cpuVirtFlags()
	if err != nil {
		return fail("KVM not usable: %s answers (API version %d, KVM_CREATE_VM works) but %v", k.Path, k.APIVersion, err)
	}
	if len(flags) == 0 {
		return fail("KVM not usable: %s answers (API version %d, KVM_CREATE_VM works) but there is no vmx or svm flag in %s: this KVM%s is not backed by hardware virtualization, which Kata's hypervisors need",
			k.Path, k.APIVersion, filepath.Join(s.host.ProcDir, "cpuinfo"), s.kvmModules())
	}
	return pass("KVM usable: %s API version %d, KVM_CREATE_VM works, CPU flag %s", k.Path, k.APIVersion, strings.Join(flags, " "))
}

// kvmModules names the KVM implementations the kernel has in /sys/module,
// for messages: " (kvm_pvm)".
func (s *system) kvmModules() string {
	var found []string
	for _, m := range []string{"kvm_intel", "kvm_amd", "kvm_pvm"} {
		if _, err := os.Stat(filepath.Join(s.host.SysDir, "module", m)); err == nil {
			found = append(found, m)
		}
	}
	if len(found) == 0 {
		return ""
	}
	return " (" + strings.Join(found, ", ") + ")"
}

// checkKataModule reports a module as loaded, built in or loadable. On a
// kernel without module support, the kernel config decides: the module
// state alone would be "assumed builtin".
func checkKataModule(s *system, name, config, why string) finding {
	k := s.host.kernel()
	state, err := k.ModuleState(name)
	if err != nil {
		return fail("%v", err)
	}
	switch state {
	case host.ModuleLoaded, host.ModuleBuiltin:
		return pass("%s %s", name, state)
	case host.ModuleAssumedBuiltin:
		cfg, err := s.kernelConfig()
		if err != nil || cfg == nil {
			return warn("%s: the kernel has no module support and no readable config; assumed built in (needed for %s)", name, why)
		}
		if f, ok := describeOption(cfg, "CONFIG_"+config); ok && cfg.options["CONFIG_"+config] == "y" {
			return f
		}
		return fail("%s missing: the kernel has no module support and CONFIG_%s is %s in %s; Kata needs it for %s",
			name, config, configState(cfg, "CONFIG_"+config), cfg.source, why)
	}
	loadable, err := k.ModuleLoadable(name)
	if err != nil {
		return fail("%s: %v", name, err)
	}
	if loadable {
		return pass("%s loadable (not loaded; the kernel stage or kata-runtime loads it)", name)
	}
	return fail("%s missing: not loaded, not built in, and not in modules.dep; Kata needs it for %s", name, why)
}

// configState says how a kernel config has an option that is not =y.
func configState(cfg *kernelConfig, name string) string {
	switch v := cfg.options[name]; v {
	case "":
		return "absent"
	case "n":
		return "not set"
	default:
		return "=" + v + " (a module the kernel cannot load)"
	}
}
