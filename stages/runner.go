package stages

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nodeprov/nodeprov/stages/artifacts"
	"github.com/nodeprov/nodeprov/stages/containerd"
	"github.com/nodeprov/nodeprov/stages/docker"
	"github.com/nodeprov/nodeprov/stages/files"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/images"
	"github.com/nodeprov/nodeprov/stages/kernel"
	"github.com/nodeprov/nodeprov/stages/machineid"
	"github.com/nodeprov/nodeprov/stages/plan"
	"github.com/nodeprov/nodeprov/stages/preflight"
	"github.com/nodeprov/nodeprov/stages/units"
)

// Mode is what a run does with the actions it plans.
type Mode string

// Run modes.
const (
	// ModePlan prints actions and changes nothing.
	ModePlan Mode = "plan"
	// ModeApply executes actions.
	ModeApply Mode = "apply"
	// ModeCheck reports drift: anything apply would change.
	ModeCheck Mode = "check"
)

// Order is the fixed stage order of the design.
var Order = []string{"preflight", "machine-id", "kernel", "fetch", "install", "files", "containerd", "docker", "units", "images"}

// All returns the stages of this build in their fixed order, configured
// by o.
func All(o Options) []plan.Stage {
	fetchStage, installStage := artifacts.New(artifacts.Options{CacheDir: o.CacheDir, Parallel: o.Parallel,
		RequirePinned: o.RequirePinned, IdleTimeout: o.IdleTimeout, Progress: o.Progress, Pins: o.Pins, Clean: o.Mode == ModeApply,
		RegistryConfig: o.RegistryConfig,
		Pipeline:       o.Mode == ModeApply && (len(o.Stages) == 0 || slices.Contains(o.Stages, "install"))})
	return []plan.Stage{preflight.Stage{}, machineid.Stage{}, kernel.Stage{}, fetchStage, installStage, files.Stage{}, containerd.Stage{}, docker.Stage{},
		units.Stage{NoBlock: o.NoBlock, FirstBoot: firstBoot(o)}, images.Stage{}}
}

// firstBoot is what the units stage installs for o.FirstBoot: the spec as
// read, and the pins this run verifies with as the lock file next to it.
func firstBoot(o Options) *units.FirstBoot {
	if !o.FirstBoot || o.Doc == nil {
		return nil
	}
	fb := &units.FirstBoot{Spec: o.Doc.Source, RequirePinned: o.RequirePinned}
	if o.Pins.Len() > 0 {
		// Trust and all: first boot holds the same entries to the same
		// policy as this run.
		fb.Lock = o.Pins.Marshal()
	}
	return fb
}

// Select returns the stages named in only (all when only is empty), keeping
// the fixed order. Unknown names are an error.
func Select(all []plan.Stage, only []string) ([]plan.Stage, error) {
	if len(only) == 0 {
		return all, nil
	}
	want := map[string]bool{}
	for _, name := range only {
		found := false
		for _, s := range all {
			if s.Name() == name {
				found = true
			}
		}
		if !found {
			names := make([]string, len(all))
			for i, s := range all {
				names[i] = s.Name()
			}
			return nil, fmt.Errorf("unknown stage %q (stages: %s)", name, strings.Join(names, ", "))
		}
		want[name] = true
	}
	var out []plan.Stage
	for _, s := range all {
		if want[s.Name()] {
			out = append(out, s)
		}
	}
	return out, nil
}

// Observer is told about progress while a run goes on; the text output
// prints from it so a boot log reads like a checklist.
type Observer interface {
	StageStarted(index, total int, name string)
	ActionFinished(stage string, a ActionReport)
	// StageFinished is called when a stage's actions are done (also when
	// one failed).
	StageFinished(name string)
}

// StageError is a failure inside a stage.
type StageError struct {
	Stage    string
	Resource string
	Err      error
}

func (e *StageError) Error() string {
	if e.Resource != "" {
		return fmt.Sprintf("%s: %s: %v", e.Stage, e.Resource, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Stage, e.Err)
}

func (e *StageError) Unwrap() error { return e.Err }

// run plans every stage in order and, in apply mode, executes each stage's
// actions before the next stage plans, so later stages plan against the
// converged state and see what changed.
func run(ctx context.Context, env *plan.Env, stages []plan.Stage, mode Mode, obs Observer) ([]StageReport, int, error) {
	var reports []StageReport
	changed := 0
	for i, st := range stages {
		if obs != nil {
			obs.StageStarted(i+1, len(stages), st.Name())
		}
		start := time.Now()
		sr := StageReport{Name: st.Name(), Actions: []ActionReport{}}
		actions, err := st.Plan(ctx, env)
		if err != nil {
			sr.DurationMs = ms(time.Since(start))
			reports = append(reports, sr)
			finished(obs, st.Name())
			return reports, changed, &StageError{Stage: st.Name(), Err: err}
		}
		for i := 0; i < len(actions); {
			batch := nextBatch(actions[i:])
			results := runBatch(ctx, env, batch, mode)
			var failed *plan.Action
			var failure error
			for j, res := range results {
				res.report.redact()
				if res.record {
					env.Changes.Record(batch[j])
				}
				if obs != nil {
					obs.ActionFinished(st.Name(), res.report)
				}
				sr.Actions = append(sr.Actions, res.report)
				if res.report.Changed || res.report.Status == StatusPending || res.report.Status == StatusDrift {
					changed++
				}
				if res.err != nil && failure == nil {
					failed, failure = batch[j], res.err
				}
			}
			if failure != nil {
				sr.DurationMs = ms(time.Since(start))
				reports = append(reports, sr)
				finished(obs, st.Name())
				return reports, changed, &StageError{Stage: st.Name(), Resource: failed.Resource, Err: failure}
			}
			i += len(batch)
		}
		sr.DurationMs = ms(time.Since(start))
		reports = append(reports, sr)
		finished(obs, st.Name())
		if err := ctx.Err(); err != nil {
			return reports, changed, err
		}
	}
	return reports, changed, nil
}

func finished(obs Observer, stage string) {
	if obs != nil {
		obs.StageFinished(stage)
	}
}

// nextBatch returns the leading run of parallel actions, or the first
// action alone.
func nextBatch(actions []*plan.Action) []*plan.Action {
	n := 1
	if actions[0].Parallel {
		for n < len(actions) && actions[n].Parallel {
			n++
		}
	}
	return actions[:n]
}

type actionResult struct {
	report ActionReport
	err    error
	// record is set when the action changed (or would change) something
	// that later stages must learn about.
	record bool
}

// runBatch runs actions concurrently (bounded by env.Parallel) and returns
// their results in order. A failure does not cancel the others: they are
// independent, and a finished download is worth keeping.
func runBatch(ctx context.Context, env *plan.Env, batch []*plan.Action, mode Mode) []actionResult {
	results := make([]actionResult, len(batch))
	if len(batch) == 1 {
		results[0] = runAction(ctx, batch[0], mode)
		return results
	}
	limit := env.Parallel
	if limit < 1 {
		limit = 4
	}
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i, a := range batch {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i] = runAction(ctx, a, mode)
		}()
	}
	wg.Wait()
	return results
}

func runAction(ctx context.Context, a *plan.Action, mode Mode) actionResult {
	ar := ActionReport{Resource: a.Resource, Op: a.Op, Detail: a.Detail, Diff: a.Diff}
	switch {
	case a.Op == plan.OpDeferred:
		ar.Status = StatusDeferred
		return actionResult{report: ar}
	case a.Op == plan.OpUnmanaged:
		ar.Status = StatusUnmanaged
		return actionResult{report: ar}
	case !a.Op.Changes():
		ar.Status = StatusUnchanged
		return actionResult{report: ar}
	case mode == ModePlan:
		ar.Status = StatusPending
		return actionResult{report: ar, record: true}
	case mode == ModeCheck:
		ar.Status = StatusDrift
		return actionResult{report: ar, record: true}
	}
	start := time.Now()
	err := a.Run(ctx)
	ar.DurationMs = ms(time.Since(start))
	if err != nil {
		ar.Status = StatusFailed
		ar.Error = err.Error()
		return actionResult{report: ar, err: err}
	}
	ar.Status = StatusChanged
	ar.Changed = true
	if a.Result != nil {
		ar.Detail = a.Result()
	}
	return actionResult{report: ar, record: true}
}

// errClass maps an error to the report's stable error class.
func errClass(err error) string {
	var se *StageError
	var le *host.LockError
	switch {
	case errors.As(err, &le):
		return "lock"
	case errors.As(err, &se):
		return "stage"
	}
	return "run"
}
