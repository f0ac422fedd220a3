package preflight

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Kernel release thresholds.
//
// containerd states no hard minimum but names "a minimum 4.x kernel" as
// the starting point: the overlay snapshotter, its default, relies on
// overlayfs features finalised in 4.x. Older kernels fail.
// kubernetes/system-validators (kubeadm's preflight) recommends 4.19, the
// oldest upstream LTS it accepts, and only warns below it since 2025: we
// do the same. runc and Kubernetes recommend 5.8+ for cgroup v2.
const (
	minMajor, minMinor             = 4, 0
	recommendMajor, recommendMinor = 4, 19
	cgroupV2Major, cgroupV2Minor   = 5, 8
)

// checkRelease compares the running kernel's release with the thresholds.
func checkRelease(s *system) finding {
	rel, err := s.kernelRelease()
	if err != nil {
		return fail("%v", err)
	}
	major, minor, err := kernelVersion(rel)
	if err != nil {
		return warn("found %s, but cannot compare it: %v", rel, err)
	}
	switch {
	case !atLeast(major, minor, minMajor, minMinor):
		return fail("found %s; containerd needs at least a %d.x kernel", rel, minMajor)
	case !atLeast(major, minor, recommendMajor, recommendMinor):
		return warn("found %s; %d.%d or newer is recommended (oldest LTS kubeadm accepts without warning)", rel, recommendMajor, recommendMinor)
	}
	return pass("found %s", rel)
}

// checkModules reports how the kernel gets its modules. A kernel without
// module support has everything built in, which is a pass: the kernel
// stage treats every module as present.
func checkModules(s *system) finding {
	if !s.modules.ModuleSupport() {
		return pass("kernel has no module support: all modules builtin")
	}
	rel, err := s.kernelRelease()
	if err != nil {
		return warn("module support, but %v", err)
	}
	dir := filepath.Join(s.host.ModulesDir, rel)
	if _, err := os.Stat(filepath.Join(dir, "modules.dep")); err != nil {
		return warn("module support, but %s/modules.dep is missing: modprobe cannot load modules for %s", dir, rel)
	}
	return pass("module support; modules for %s in %s", rel, dir)
}

// kernelConfig is a parsed kernel .config: option name (with CONFIG_) to
// value ("y", "m", a number or string); "n" for "# CONFIG_X is not set".
type kernelConfig struct {
	source  string
	options map[string]string
}

// maxConfigBytes bounds how much of a (decompressed) config is read; real
// ones are a few hundred KiB.
const maxConfigBytes = 16 << 20

// kernelConfig finds and parses the running kernel's config: the kernel's
// own /proc/config.gz (CONFIG_IKCONFIG_PROC), then the distribution's
// /boot/config-<release>, then /lib/modules/<release>/config (Fedora
// CoreOS, Arch). A kernel without any of them gives (nil, nil).
func (s *system) kernelConfig() (*kernelConfig, error) {
	if s.configRead {
		return s.config, s.configErr
	}
	s.configRead = true
	candidates := []string{filepath.Join(s.host.ProcDir, "config.gz")}
	if rel, err := s.kernelRelease(); err == nil {
		candidates = append(candidates,
			filepath.Join(s.host.BootDir, "config-"+rel),
			filepath.Join(s.host.ModulesDir, rel, "config"))
	}
	for _, p := range candidates {
		cfg, err := readKernelConfig(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		s.config, s.configErr = cfg, err
		return cfg, err
	}
	return nil, nil
}

// readKernelConfig reads a plain or gzip-compressed (by name) config file.
func readKernelConfig(p string) (*kernelConfig, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(p, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		defer zr.Close()
		r = zr
	}
	data, err := io.ReadAll(io.LimitReader(r, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("read %s: larger than %d bytes", p, maxConfigBytes)
	}
	opts, err := parseKernelConfig(data)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", p, err)
	}
	return &kernelConfig{source: p, options: opts}, nil
}

// parseKernelConfig parses Kconfig output: "CONFIG_X=y", "CONFIG_X=m",
// `CONFIG_X="str"`, "# CONFIG_X is not set", comments and blank lines.
func parseKernelConfig(data []byte) (map[string]string, error) {
	opts := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if name, ok := strings.CutPrefix(line, "# "); ok {
			if name, ok = strings.CutSuffix(name, " is not set"); ok && strings.HasPrefix(name, "CONFIG_") {
				opts[name] = "n"
			}
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(name, "CONFIG_") {
			continue
		}
		opts[name] = value
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(opts) == 0 {
		return nil, errors.New("no CONFIG_ options: not a kernel config")
	}
	return opts, nil
}

// checkConfigSource says where the kernel config came from. A kernel
// without a readable config is a warning, not a failure: the options are
// then simply not checked.
func checkConfigSource(s *system) finding {
	cfg, err := s.kernelConfig()
	if err != nil {
		return finding{status: StatusWarn, msg: fmt.Sprintf("%v; kernel options not checked", err), stop: true}
	}
	if cfg == nil {
		rel, _ := s.kernelRelease()
		return finding{
			status: StatusWarn,
			msg: fmt.Sprintf("no kernel config in %s, %s or %s; kernel options not checked",
				filepath.Join(s.host.ProcDir, "config.gz"),
				filepath.Join(s.host.BootDir, "config-"+rel),
				filepath.Join(s.host.ModulesDir, rel, "config")),
			stop: true,
		}
	}
	return pass("read %s (%d options)", cfg.source, len(cfg.options))
}

// configOption is one kernel option the node needs.
type configOption struct {
	name     string // without CONFIG_
	required bool
	why      string
	// aliases are options that provide the same feature on other kernels
	// (renamed symbols, cgroup v2 equivalents).
	aliases []string
}

// configOptions is the kernel option list, a synthesis of moby's and
// runc's check-config.sh ("generally necessary") and kubeadm's
// system-validators. Required: what containerd, runc and the CNI bridge
// network need to run any container. Advisory: what only some workloads
// or Kubernetes add-ons use (kube-proxy's IPVS mode and comments, seccomp
// profiles, user namespaces, CPU limits).
func configOptions() []configOption {
	return []configOption{
		{name: "NAMESPACES", required: true, why: "container namespaces"},
		{name: "NET_NS", required: true, why: "network namespaces"},
		{name: "PID_NS", required: true, why: "PID namespaces"},
		{name: "IPC_NS", required: true, why: "IPC namespaces"},
		{name: "UTS_NS", required: true, why: "UTS namespaces"},
		{name: "CGROUPS", required: true, why: "control groups"},
		{name: "CGROUP_CPUACCT", required: true, why: "CPU accounting (cpuacct)"},
		{name: "CGROUP_DEVICE", required: true, why: "device access control", aliases: []string{"CGROUP_BPF"}},
		{name: "CGROUP_FREEZER", required: true, why: "pausing containers (freezer)"},
		{name: "CGROUP_SCHED", required: true, why: "CPU shares (cpu controller)"},
		{name: "CGROUP_PIDS", required: true, why: "PID limits (pids controller)"},
		{name: "FAIR_GROUP_SCHED", required: true, why: "CPU shares for the fair scheduler"},
		{name: "CPUSETS", required: true, why: "CPU pinning (cpuset controller)"},
		{name: "MEMCG", required: true, why: "memory limits (memory controller)"},
		{name: "KEYS", required: true, why: "runc's session keyrings"},
		{name: "POSIX_MQUEUE", required: true, why: "runc mounts /dev/mqueue in every container"},
		{name: "OVERLAY_FS", required: true, why: "overlayfs, containerd's default snapshotter"},
		{name: "VETH", required: true, why: "veth pairs of the CNI bridge network"},
		{name: "BRIDGE", required: true, why: "the CNI bridge network"},
		{name: "BRIDGE_NETFILTER", required: true, why: "iptables on bridged traffic (net.bridge.bridge-nf-call-iptables)"},
		{name: "NF_NAT", required: true, why: "NAT for container traffic"},
		{name: "IP_NF_NAT", required: true, why: "the iptables nat table", aliases: []string{"NFT_NAT"}},
		{name: "IP_NF_FILTER", required: true, why: "the iptables filter table"},
		{name: "IP_NF_TARGET_MASQUERADE", required: true, why: "masquerading of container traffic (CNI ipMasq)", aliases: []string{"NETFILTER_XT_TARGET_MASQUERADE"}},
		{name: "NETFILTER_XT_MATCH_ADDRTYPE", required: true, why: "iptables addrtype match (portmap, kube-proxy)"},
		{name: "NETFILTER_XT_MATCH_CONNTRACK", required: true, why: "iptables conntrack match"},
		{name: "NETFILTER_XT_MATCH_COMMENT", why: "iptables comments (kube-proxy)"},
		{name: "NETFILTER_XT_TARGET_REDIRECT", why: "iptables REDIRECT (kube-proxy)", aliases: []string{"IP_NF_TARGET_REDIRECT"}},
		{name: "NETFILTER_XT_MATCH_IPVS", why: "kube-proxy IPVS mode"},
		{name: "USER_NS", why: "user namespaces (pods with hostUsers: false)"},
		{name: "SECCOMP", why: "seccomp profiles (RuntimeDefault)"},
		{name: "SECCOMP_FILTER", why: "seccomp BPF filters"},
		{name: "CFS_BANDWIDTH", why: "CPU limits (CFS quota)"},
		{name: "CGROUP_HUGETLB", why: "huge page limits"},
	}
}

// configProbes makes one probe per kernel option, named
// "kernel.config.CONFIG_<NAME>".
func configProbes() []*probe {
	var out []*probe
	for _, o := range configOptions() {
		out = append(out, &probe{
			name:     "kernel.config.CONFIG_" + o.name,
			required: o.required,
			check:    func(s *system) finding { return checkOption(s, o) },
		})
	}
	return out
}

// checkOption reports an option as builtin (=y), module (=m) or missing;
// an alias that is set satisfies it.
func checkOption(s *system, o configOption) finding {
	cfg, err := s.kernelConfig()
	if err != nil || cfg == nil {
		// The parent probe stops its children first; this is only a guard.
		return warn("kernel config not available")
	}
	name := "CONFIG_" + o.name
	if f, ok := describeOption(cfg, name); ok {
		return f
	}
	for _, a := range o.aliases {
		if f, ok := describeOption(cfg, "CONFIG_"+a); ok {
			f.msg = fmt.Sprintf("%s not set; provided by %s", name, f.msg)
			return f
		}
	}
	state := "not in config"
	if cfg.options[name] == "n" {
		state = "not set"
	}
	if len(o.aliases) > 0 {
		state += ", nor CONFIG_" + strings.Join(o.aliases, ", CONFIG_")
	}
	return fail("%s missing (%s): needed for %s", name, state, o.why)
}

// describeOption describes an option that is set: "CONFIG_VETH=y builtin".
func describeOption(cfg *kernelConfig, name string) (finding, bool) {
	switch v := cfg.options[name]; v {
	case "", "n":
		return finding{}, false
	case "y":
		return pass("%s=y builtin", name), true
	case "m":
		return pass("%s=m module", name), true
	default:
		return pass("%s=%s", name, v), true
	}
}
