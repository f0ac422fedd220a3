package preflight

import (
	"context"
	"fmt"

	"github.com/nodeprov/nodeprov/spec"
)

// Status is the outcome of one probe.
type Status string

// Probe outcomes.
const (
	// StatusPass means the host meets the requirement.
	StatusPass Status = "pass"
	// StatusWarn means the host works but something deserves attention.
	StatusWarn Status = "warn"
	// StatusFail means the host does not meet the requirement.
	StatusFail Status = "fail"
	// StatusDeferred is a probe of live host state on an offline image
	// root: the state only exists once the image boots.
	StatusDeferred Status = "deferred"
)

// ProbeResult is what one probe found. Its JSON form is part of the
// `nodeprov sysinfo -o json` output and stays stable.
type ProbeResult struct {
	// Name is the probe's stable name, the one preflight.ignore takes.
	Name string `json:"name"`
	// Required probes fail a run; advisory ones only warn.
	Required bool   `json:"required"`
	Status   Status `json:"status"`
	// Message says what was found: "found 6.18.44", "CONFIG_VETH=y builtin".
	Message string `json:"message"`
	// Ignored is set when preflight.ignore names the probe.
	Ignored bool `json:"ignored,omitempty"`
}

// blocking reports whether r stops a run: a required probe that failed and
// is not ignored.
func (r ProbeResult) blocking() bool {
	return r.Required && r.Status == StatusFail && !r.Ignored
}

// finding is what a probe's check returns.
type finding struct {
	status Status
	msg    string
	// stop keeps the probe's children from running because the parent
	// could not gather what they need (no kernel config to read).
	stop bool
}

func pass(format string, args ...any) finding {
	return finding{status: StatusPass, msg: fmt.Sprintf(format, args...)}
}

func warn(format string, args ...any) finding {
	return finding{status: StatusWarn, msg: fmt.Sprintf(format, args...)}
}

func fail(format string, args ...any) finding {
	return finding{status: StatusFail, msg: fmt.Sprintf(format, args...)}
}

// probe is one node of the probe tree. Whether it is required is decided
// where the tree is built, never by the check itself.
type probe struct {
	name     string
	required bool
	// live probes read the running kernel; on an offline root they are
	// deferred to first boot, children included.
	live     bool
	check    func(s *system) finding
	children []*probe
}

// tree returns the probes in the order they run and report, the Kata
// probes last when kata asks for them. Children run only when their parent
// neither failed nor stopped; a failed cgroup detection leaves nothing to
// list controllers from.
func tree(kata kataMode) []*probe {
	ps := []*probe{
		{name: "proc.mounted", required: true, live: true, check: checkProc},
		{name: "kernel.release", required: true, live: true, check: checkRelease},
		{name: "kernel.modules", live: true, check: checkModules},
		{name: "kernel.config", live: true, check: checkConfigSource, children: configProbes()},
		{name: "cgroups.version", required: true, live: true, check: checkCgroupVersion, children: []*probe{
			{name: "cgroups.controllers", required: true, check: checkControllers},
		}},
		{name: "binary.mount", required: true, check: checkBinary("mount")},
		{name: "binary.umount", required: true, check: checkBinary("umount")},
		{name: "binary.modprobe", required: true, check: checkModprobe},
		{name: "binary.iptables-or-nft", check: checkFirewall},
		{name: "network.localhost", required: true, check: checkLocalhost},
		{name: "disk.free", check: checkDisk},
		{name: "swap", live: true, check: checkSwap},
		{name: "machine-id", check: checkMachineID},
	}
	if kata != kataOff {
		ps = append(ps, kataProbes(kata == kataRequired)...)
	}
	return ps
}

// ProbeNames returns the name of every probe, in report order, including
// those that only run when their parent succeeds or when the spec has Kata.
func ProbeNames() []string {
	var names []string
	var walk func([]*probe)
	walk = func(ps []*probe) {
		for _, p := range ps {
			names = append(names, p.name)
			walk(p.children)
		}
	}
	walk(tree(kataRequired))
	return names
}

// runProbes runs the tree against s and returns the results in order.
func runProbes(ctx context.Context, s *system, probes []*probe) ([]ProbeResult, error) {
	var out []ProbeResult
	for _, p := range probes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var f finding
		if p.live && !s.live {
			f = finding{status: StatusDeferred, msg: "deferred to first boot (offline root: reads the running kernel)", stop: true}
		} else {
			f = p.check(s)
		}
		out = append(out, ProbeResult{Name: p.name, Required: p.required, Status: f.status, Message: f.msg})
		if f.stop || f.status == StatusFail || len(p.children) == 0 {
			continue
		}
		sub, err := runProbes(ctx, s, p.children)
		if err != nil {
			return nil, err
		}
		out = append(out, sub...)
	}
	return out, nil
}

// ignoreMatch returns the preflight.ignore entry that covers name: the name
// itself, a dotted prefix of it ("kernel.config" covers
// "kernel.config.CONFIG_VETH" and "kernel.config" itself), or "all".
func ignoreMatch(name string, ignore []string) (string, bool) {
	return spec.Preflight{Ignore: ignore}.Ignores(name)
}

// unknownIgnores returns the entries of ignore that cover no probe, so a
// typo does not silently ignore nothing.
func unknownIgnores(ignore []string) []string {
	names := append(ProbeNames(), spec.CrossStageChecks()...)
	var out []string
	for _, e := range ignore {
		found := false
		for _, n := range names {
			if _, ok := ignoreMatch(n, []string{e}); ok {
				found = true
				break
			}
		}
		if !found {
			out = append(out, e)
		}
	}
	return out
}

// applyIgnore marks the results preflight.ignore covers.
func applyIgnore(results []ProbeResult, ignore []string) {
	for i := range results {
		if _, ok := ignoreMatch(results[i].Name, ignore); ok {
			results[i].Ignored = true
		}
	}
}
