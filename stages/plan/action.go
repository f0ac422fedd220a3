// Package plan holds what every stage shares: actions that describe and
// converge one resource, the environment a stage plans in, and the set of
// changes later stages react to.
package plan

import (
	"context"
	"sort"
)

// Op says what an action does to its resource.
type Op string

// Operations an action can plan.
const (
	// OpCreate creates a missing resource.
	OpCreate Op = "create"
	// OpUpdate changes an existing resource.
	OpUpdate Op = "update"
	// OpDelete removes a resource nodeprov no longer manages.
	OpDelete Op = "delete"
	// OpNone means the resource is already as desired.
	OpNone Op = "none"
	// OpDeferred is a live step that cannot run now (offline root) and
	// happens at first boot instead.
	OpDeferred Op = "deferred"
	// OpUnmanaged is a resource nodeprov leaves alone because it belongs to
	// the operator.
	OpUnmanaged Op = "unmanaged"
)

// Changes reports whether the op modifies the resource when applied.
func (o Op) Changes() bool { return o == OpCreate || o == OpUpdate || o == OpDelete }

// Action is one planned step: it describes desired versus actual state and
// knows how to converge it atomically.
type Action struct {
	// Resource names what the action is about: "file /etc/crictl.yaml",
	// "sysctl net.ipv4.ip_forward".
	Resource string
	// Op is what applying the action does.
	Op Op
	// Detail is a short human description: "0 -> 1", "mode 0600 -> 0644".
	Detail string
	// Diff is a unified diff of file contents, when the action changes one.
	Diff string
	// Paths are the files (inside the root) the action writes; later
	// stages see them in the ChangeSet once the action changed them.
	Paths []string
	// Run converges the resource. It is only called when Op.Changes().
	Run func(ctx context.Context) error
	// Parallel actions next to each other in a stage run concurrently
	// (downloads); Run must then be safe to call alongside the others.
	Parallel bool
	// Result, when set, describes what Run did (which digest was
	// verified, how); the report shows it instead of Detail.
	Result func() string
}

// ChangeSet records what earlier actions of a run changed (in apply) or
// would change (in plan and check), so later stages can react: restart a
// unit whose config changed, and leave alone one whose did not.
type ChangeSet struct {
	paths     map[string]bool
	resources []string
}

// NewChangeSet returns an empty ChangeSet.
func NewChangeSet() *ChangeSet { return &ChangeSet{paths: map[string]bool{}} }

// Record notes that a has changed (or, in plan and check, would change)
// its resource.
func (c *ChangeSet) Record(a *Action) {
	c.resources = append(c.resources, a.Resource)
	for _, p := range a.Paths {
		c.paths[p] = true
	}
}

// Path reports whether the file at p (inside the root) changed.
func (c *ChangeSet) Path(p string) bool { return c.paths[p] }

// Paths returns the changed paths, sorted.
func (c *ChangeSet) Paths() []string {
	out := make([]string, 0, len(c.paths))
	for p := range c.paths {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Resources returns the changed resources in the order they changed.
func (c *ChangeSet) Resources() []string { return append([]string(nil), c.resources...) }
