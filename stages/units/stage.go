// Package units is the units stage: systemd unit files and drop-ins,
// enablement, masks and run state.
//
// Live (the target is "/" and systemd runs) it talks to systemd over D-Bus:
// one daemon-reload when unit files or links changed, enable, mask, start,
// stop, and a restart of exactly the running units whose unit file,
// drop-ins, programs or configuration changed in this run. Offline (an
// image root, or no systemd running) it creates the links `systemctl
// --root=DIR enable` would and reports start and restart as deferred to
// boot.
package units

import (
	"context"
	"fmt"
	"time"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// Stage converges the spec's units.
type Stage struct {
	// NoBlock queues start, stop and restart jobs without waiting for
	// their results (reported as "queued"): inside cloud-init or a
	// first-boot unit, waiting for a unit ordered after the caller
	// deadlocks.
	NoBlock bool
	// FirstBoot, when set, also installs the first-boot unit for golden
	// images (see FirstBoot).
	FirstBoot *FirstBoot
	// Connect opens a connection to the live systemd; nil uses Dial.
	Connect func(ctx context.Context) (Systemd, error)
	// Journal returns a unit's last journal lines for failed jobs; nil
	// uses the package's Journal (journalctl).
	Journal func(ctx context.Context, unit string) (string, error)
	// Booted reports whether systemd runs on the target; nil uses the
	// package's Booted.
	Booted func(root *host.Root) bool
	// JobTimeout bounds the wait for one job; 0 means 10 minutes.
	JobTimeout time.Duration
}

// Name implements plan.Stage.
func (Stage) Name() string { return "units" }

// planner holds one Plan call's state.
type planner struct {
	s       Stage
	env     *plan.Env
	root    *host.Root
	live    bool
	changed []string // paths changed earlier in this run, sorted
	// written are the unit files this stage writes, by path: an instance
	// whose template the spec gives is found (and read) there.
	written map[string]*unitPlan
	// changedHere are the unit files and drop-ins this stage changes.
	changedHere []string
}

// unitPlan is everything planned for one unit.
type unitPlan struct {
	u        spec.Unit
	where    string // spec path for messages: "units[2]"
	implicit bool   // not in the spec: containerd.service watched for restarts
	boot     bool   // the first-boot unit: enabled, never started by the stage
	contents []byte // the unit file nodeprov writes; nil when it writes none
	file     string // the unit file systemd loads; "" when there is none
	pending  bool   // file is written by an earlier stage of this (planned) run
	main     *unitFile
	dropins  []*unitFile // effective drop-ins in SystemDir, by name
	fileAct  *plan.Action
	dropActs []*plan.Action
	masked   bool
	maskAt   host.FileState // what is at SystemDir/<name>
	info     installInfo
	status   UnitStatus // live only
}

func (u *unitPlan) name() string { return u.u.Name }

// Plan implements plan.Stage. Actions come in this order: the first-boot
// files (when asked for), unit files and drop-ins, unmask, enable/disable,
// mask, daemon-reload (live), then stop/start/restart.
func (s Stage) Plan(ctx context.Context, env *plan.Env) ([]*plan.Action, error) {
	if env.Spec == nil {
		return nil, nil
	}
	p := &planner{s: s, env: env, root: env.Root}
	if env.Changes != nil {
		p.changed = env.Changes.Paths()
	}
	booted := s.Booted
	if booted == nil {
		booted = Booted
	}
	p.live = env.Live && booted(env.Root)

	var actions []*plan.Action
	if s.FirstBoot != nil {
		fb, err := p.firstBootFiles()
		if err != nil {
			return nil, err
		}
		actions = fb
	}
	units, err := p.resolveAll()
	if err != nil {
		return nil, err
	}
	if len(units) == 0 && !(p.live && len(unitDirChanges(p.changed)) > 0) {
		return nil, nil
	}
	if env.Live && !p.live {
		env.Warnf("systemd is not running on this host: units are enabled with links as in an image root, and start, stop and restart wait for the next live apply")
	}
	if p.live {
		if err := p.readStatus(ctx, units); err != nil {
			return nil, err
		}
	}

	for _, u := range units {
		if u.fileAct != nil {
			actions = append(actions, u.fileAct)
		}
		actions = append(actions, u.dropActs...)
	}
	var links []*plan.Action
	for _, step := range []func(*unitPlan) (*plan.Action, error){p.unmask, p.enable, p.mask} {
		for _, u := range units {
			a, err := step(u)
			if err != nil {
				return nil, fmt.Errorf("unit %s (%s): %w", u.name(), u.where, err)
			}
			if a != nil {
				links = append(links, a)
			}
		}
	}
	actions = append(actions, links...)
	if p.live {
		actions = append(actions, p.reload(units, links))
	}
	for _, u := range units {
		if a := p.runState(u); a != nil {
			actions = append(actions, a)
		}
	}
	return actions, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
