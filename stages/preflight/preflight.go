// Package preflight is the preflight stage and `nodeprov sysinfo`: probes
// of the host (kernel release, cgroups, kernel config options, modules,
// binaries, localhost, /proc, disk, swap, machine-id, and for Kata
// Containers KVM, CPU virtualization and vhost modules) run before
// anything changes, modelled on k0s sysinfo and kubeadm's preflight
// checks.
//
// Probes form a tree (kernel.config has one child per option,
// cgroups.version has cgroups.controllers). Each probe has a stable name
// and is registered as required or advisory; it reports pass, warn or fail
// with a message, or deferred for live state on an offline image root.
// A failed required probe stops the run unless preflight.ignore names it;
// every other failure and warning becomes a report warning.
//
// An ignored required probe that fails is still a warning: the run goes
// on, but the bypass stays visible. An ignored advisory probe, or an
// ignored warning, adds no warning at all, so known noise can be silenced;
// the action still shows the result.
//
// preflight.ignore entries match a probe name exactly or as a dotted
// prefix: "kernel.config" covers kernel.config and every
// kernel.config.CONFIG_* probe, "binary" every binary.* probe. "all"
// covers every probe, as in kubeadm's --ignore-preflight-errors.
package preflight

import (
	"context"
	"fmt"
	"strings"

	"github.com/nodeprov/nodeprov/stages/plan"
)

// Stage runs the probes as the first stage of a run. Each probe becomes an
// action "probe <name>" with op none (deferred on an offline root) and
// the result as detail; nothing is ever changed.
type Stage struct {
	// Host says where live probes look; the zero value is the running
	// host. Tests point it at fake /proc, /sys and /boot trees.
	Host Host
}

// Name implements plan.Stage.
func (Stage) Name() string { return "preflight" }

// Plan implements plan.Stage. It fails with a *FailedError when a required
// probe fails and preflight.ignore does not name it.
func (st Stage) Plan(ctx context.Context, env *plan.Env) ([]*plan.Action, error) {
	var modules moduleSupporter
	if env.Kernel != nil {
		modules = env.Kernel
	}
	results, err := runProbes(ctx, newSystem(st.Host, env.Root, env.Live, modules), tree(kataModeOf(env)))
	if err != nil {
		return nil, err
	}
	var ignore []string
	if env.Spec != nil {
		ignore = env.Spec.Preflight.Ignore
	}
	for _, e := range unknownIgnores(ignore) {
		env.Warnf("preflight.ignore: %q names no probe", e)
	}
	applyIgnore(results, ignore)

	actions := make([]*plan.Action, 0, len(results))
	var failed []ProbeResult
	for _, r := range results {
		a := &plan.Action{Resource: "probe " + r.Name, Op: plan.OpNone, Detail: detail(r)}
		if r.Status == StatusDeferred {
			a.Op = plan.OpDeferred
		}
		actions = append(actions, a)
		switch {
		case r.blocking() && env.Live:
			failed = append(failed, r)
		case r.blocking():
			// An image root is checked again when it boots; what it lacks
			// now may be installed later in the image build.
			env.Warnf("preflight %s failed on the image root (checked again at first boot): %s", r.Name, r.Message)
		case r.Ignored && r.Status == StatusFail && r.Required:
			env.Warnf("preflight %s failed (ignored by preflight.ignore): %s", r.Name, r.Message)
		case r.Ignored:
			// The operator knows: an ignored advisory probe stays quiet.
		case r.Status == StatusFail:
			env.Warnf("preflight %s failed (advisory): %s", r.Name, r.Message)
		case r.Status == StatusWarn:
			env.Warnf("preflight %s: %s", r.Name, r.Message)
		}
	}
	if len(failed) > 0 {
		return nil, &FailedError{Probes: failed}
	}
	return actions, nil
}

// kataModeOf says how the spec needs Kata: required with a kata runtime
// handler in containerd, advisory when it only installs Kata.
func kataModeOf(env *plan.Env) kataMode {
	switch {
	case env.Spec == nil:
		return kataOff
	case len(env.Spec.KataRuntimes()) > 0:
		return kataRequired
	case env.Spec.Components.Kata != nil:
		return kataAdvisory
	}
	return kataOff
}

// detail is an action's detail: "pass: found 6.18.44".
func detail(r ProbeResult) string {
	d := string(r.Status) + ": " + r.Message
	if r.Ignored && r.Status == StatusFail {
		d += " (ignored)"
	}
	return d
}

// FailedError is returned by Stage.Plan when required probes fail.
type FailedError struct {
	Probes []ProbeResult
}

func (e *FailedError) Error() string {
	names := make([]string, len(e.Probes))
	details := make([]string, len(e.Probes))
	for i, r := range e.Probes {
		names[i] = r.Name
		details[i] = r.Name + ": " + r.Message
	}
	list := strings.Join(names, ", ")
	if len(e.Probes) == 1 {
		return fmt.Sprintf("required probe %s; to go on anyway, add it to the spec: preflight.ignore: [%s]", details[0], list)
	}
	return fmt.Sprintf("%d required probes failed: %s; to go on anyway, add them to the spec: preflight.ignore: [%s]",
		len(e.Probes), strings.Join(details, "; "), list)
}
