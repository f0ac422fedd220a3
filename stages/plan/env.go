package plan

import (
	"context"

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
}
