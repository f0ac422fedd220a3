package plan

import "context"

// Stage plans the actions that converge one part of the node. Plan
// compares the spec with the target and returns what would change; it
// changes nothing itself (a stage that must probe something expensive
// can look at Env.Mode). The runner applies the actions.
type Stage interface {
	// Name is the stage's name in reports and --stages.
	Name() string
	// Plan returns the stage's actions, in the order they run.
	Plan(ctx context.Context, env *Env) ([]*Action, error)
}
