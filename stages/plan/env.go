package plan

import (
	"context"
	"fmt"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
)

// Stage plans the actions that converge one part of the node.
type Stage interface {
	Name() string
	Plan(ctx context.Context, env *Env) ([]*Action, error)
}

// Kernel is the live kernel interface the kernel stage needs;
// *host.Kernel implements it.
type Kernel interface {
	ReadSysctl(key string) (value string, exists bool, err error)
	WriteSysctl(key, value string) error
	ModuleSupport() bool
	ModuleState(name string) (host.ModuleState, error)
	LoadModule(ctx context.Context, name string) error
}

// Env is what stages see: the spec, the target root, the live kernel, and
// what earlier stages changed.
type Env struct {
	Spec *spec.Node
	Root *host.Root
	// Live is true when live state (kernel, systemd) is touched; false for
	// an offline image root, where live steps are deferred to first boot.
	Live    bool
	Kernel  Kernel
	Changes *ChangeSet
	// Parallel bounds concurrently running parallel actions (downloads).
	Parallel int
	// Mode is "plan", "apply" or "check"; stages that must not even
	// probe something expensive in plan mode can look at it.
	Mode string

	warnings []string
}

// Warnf records a warning for the report (an advisory probe that failed, a
// policy that only warns). Warnings never fail a run.
func (e *Env) Warnf(format string, args ...any) {
	e.warnings = append(e.warnings, fmt.Sprintf(format, args...))
}

// Warnings returns the warnings recorded so far.
func (e *Env) Warnings() []string { return append([]string(nil), e.warnings...) }
