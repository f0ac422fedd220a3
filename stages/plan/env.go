package plan

import (
	"context"
	"fmt"
	"sync"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
)

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
	// Doc is the spec as loaded (what the file itself sets, for messages
	// that distinguish an explicit value from a default); nil in tests
	// that build a Spec directly.
	Doc  *spec.Document
	Root *host.Root
	// Live is true when live state (kernel, systemd) is touched; false for
	// an offline image root, where live steps are deferred to first boot.
	Live    bool
	Kernel  Kernel
	Changes *ChangeSet
	// Parallel bounds concurrently running parallel actions (downloads).
	Parallel int
	// Arch is the architecture artifacts are expanded for.
	Arch string

	// Mode is "plan", "apply" or "check"; stages that must not even
	// probe something expensive in plan mode can look at it.
	Mode string

	mu       sync.Mutex
	warnings []string
}

// Warnf records a warning for the report (an advisory probe that failed, a
// policy that only warns). Warnings never fail a run.
func (e *Env) Warnf(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.warnings = append(e.warnings, fmt.Sprintf(format, args...))
}

// Warnings returns the warnings recorded so far.
func (e *Env) Warnings() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.warnings...)
}
