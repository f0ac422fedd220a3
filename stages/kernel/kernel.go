// Package kernel is the kernel stage: modules and sysctl values, live and
// persisted for boot.
package kernel

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// Files the kernel stage persists, read at boot by systemd-modules-load and
// systemd-sysctl.
const (
	ModulesLoadPath = "/etc/modules-load.d/nodeprov.conf"
	SysctlConfPath  = "/etc/sysctl.d/99-nodeprov.conf"
)

// Stage loads modules and applies sysctl values live, then persists
// both so they survive a reboot. Live state goes first: a value the kernel
// refuses must never be written into a boot-time file.
type Stage struct{}

// Name implements plan.Stage.
func (Stage) Name() string { return "kernel" }

// Plan implements plan.Stage.
func (Stage) Plan(ctx context.Context, env *plan.Env) ([]*plan.Action, error) {
	k := env.Spec.Kernel
	var actions []*plan.Action
	for _, m := range k.Modules {
		a, err := planModule(env, m)
		if err != nil {
			return nil, err
		}
		actions = append(actions, a)
	}
	persist, err := planPersisted(env.Root, "modules-load "+ModulesLoadPath, ModulesLoadPath, modulesFile(k.Modules))
	if err != nil {
		return nil, err
	}
	actions = append(actions, persist)

	for _, key := range slices.Sorted(maps.Keys(k.Sysctl)) {
		a, err := planSysctl(env, key, string(k.Sysctl[key]))
		if err != nil {
			return nil, err
		}
		actions = append(actions, a)
	}
	persist, err = planPersisted(env.Root, "sysctl.d "+SysctlConfPath, SysctlConfPath, sysctlFile(k.Sysctl))
	if err != nil {
		return nil, err
	}
	return append(actions, persist), nil
}

func planModule(env *plan.Env, name string) (*plan.Action, error) {
	a := &plan.Action{Resource: "module " + name}
	if !env.Live {
		a.Op, a.Detail = plan.OpDeferred, "loaded at boot by systemd-modules-load"
		return a, nil
	}
	state, err := env.Kernel.ModuleState(name)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", name, err)
	}
	switch state {
	case host.ModuleAbsent:
		a.Op, a.Detail = plan.OpCreate, "load with modprobe"
		a.Run = func(ctx context.Context) error {
			if err := env.Kernel.LoadModule(ctx, name); err != nil {
				return err
			}
			st, err := env.Kernel.ModuleState(name)
			if err != nil {
				return err
			}
			if st == host.ModuleAbsent {
				return fmt.Errorf("module %s: modprobe succeeded but the module is not loaded", name)
			}
			return nil
		}
	case host.ModuleAssumedBuiltin:
		a.Op, a.Detail = plan.OpNone, "builtin (kernel has no module support)"
	default:
		a.Op, a.Detail = plan.OpNone, state.String()
	}
	return a, nil
}

func planSysctl(env *plan.Env, key, want string) (*plan.Action, error) {
	a := &plan.Action{Resource: "sysctl " + key}
	if !env.Live {
		a.Op, a.Detail = plan.OpDeferred, want+" at boot by systemd-sysctl"
		return a, nil
	}
	cur, exists, err := env.Kernel.ReadSysctl(key)
	if err != nil {
		return nil, fmt.Errorf("sysctl %s: %w", key, err)
	}
	wantNorm := host.NormalizeSysctl(want)
	if exists && host.NormalizeSysctl(cur) == wantNorm {
		a.Op, a.Detail = plan.OpNone, wantNorm
		return a, nil
	}
	a.Op = plan.OpUpdate
	a.Detail = fmt.Sprintf("%s -> %s", host.NormalizeSysctl(cur), wantNorm)
	if !exists {
		// Keys can appear when a module of this run loads (net.bridge.*
		// after br_netfilter); apply reports a missing key clearly.
		a.Detail = "(absent) -> " + wantNorm
	}
	a.Run = func(context.Context) error {
		if err := env.Kernel.WriteSysctl(key, want); err != nil {
			return err
		}
		got, _, err := env.Kernel.ReadSysctl(key)
		if err != nil {
			return fmt.Errorf("sysctl %s: read back: %w", key, err)
		}
		if host.NormalizeSysctl(got) != wantNorm {
			return fmt.Errorf("sysctl %s: kernel kept %q after writing %q", key, host.NormalizeSysctl(got), wantNorm)
		}
		return nil
	}
	return a, nil
}

// planPersisted writes a generated boot-time file, or removes it when the
// spec no longer asks for anything (data is nil).
func planPersisted(root *host.Root, resource, p string, data []byte) (*plan.Action, error) {
	if data == nil {
		return plan.PlanRemove(root, resource, p)
	}
	return plan.PlanFile(root, resource, plan.FileSpec{Path: p, Data: data, Mode: 0o644})
}

func modulesFile(mods []string) []byte {
	if len(mods) == 0 {
		return nil
	}
	sorted := append([]string(nil), mods...)
	sort.Strings(sorted)
	var b strings.Builder
	b.WriteString(plan.ManagedHeader)
	for _, m := range sorted {
		b.WriteString(m)
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

func sysctlFile(values map[string]spec.Scalar) []byte {
	if len(values) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString(plan.ManagedHeader)
	for _, k := range slices.Sorted(maps.Keys(values)) {
		fmt.Fprintf(&b, "%s = %s\n", k, values[k])
	}
	return []byte(b.String())
}
