package units

import (
	"context"
	"fmt"
	"strings"

	"github.com/nodeprov/nodeprov/stages/plan"
)

// Run state: what the live systemd says, and the start, stop and restart
// jobs that bring units to the spec's state.

// readStatus asks the live systemd for each unit's state.
func (p *planner) readStatus(ctx context.Context, units []*unitPlan) error {
	if len(units) == 0 {
		return nil
	}
	conn, err := p.s.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, u := range units {
		st, err := conn.Status(ctx, u.name())
		if err != nil {
			return fmt.Errorf("unit %s: read state from systemd: %w", u.name(), err)
		}
		u.status = st
	}
	return nil
}

// withConn runs fn on a fresh connection to the live systemd.
func (s Stage) withConn(ctx context.Context, fn func(Systemd) error) error {
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return fn(conn)
}

// runState plans start, stop or restart. Live: a stopped unit is stopped;
// a running unit is restarted when something it uses changed; a started
// unit that is not running is started (which picks up every change).
// Offline these are deferred: an image runs nothing until it boots.
func (p *planner) runState(u *unitPlan) *plan.Action {
	name, state := u.name(), u.u.State
	if u.boot || (u.u.Masked && state != "stopped") {
		return nil
	}
	why := p.restartReasons(u)
	changed := "changed: " + strings.Join(why, ", ")
	if !p.live {
		switch {
		case state == "started":
			d := "started at boot (enabled)"
			if !p.enabledAtBoot(u) {
				d = "start deferred to a live apply (not enabled, so boot does not start it)"
			}
			return &plan.Action{Resource: "start " + name, Op: plan.OpDeferred, Detail: d}
		case state == "stopped":
			return &plan.Action{Resource: "stop " + name, Op: plan.OpDeferred, Detail: "stopped by the next live apply (nothing runs in an image root)"}
		case len(why) > 0:
			return &plan.Action{Resource: "restart " + name, Op: plan.OpDeferred, Detail: "restart deferred: takes effect at boot (" + changed + ")"}
		}
		return nil
	}
	st := u.status
	switch {
	case state == "stopped" && st.running():
		return p.job(JobStop, name, st.ActiveState+" -> stopped", false)
	case state == "stopped":
		return &plan.Action{Resource: "stop " + name, Op: plan.OpNone, Detail: st.ActiveState}
	case st.running() && len(why) > 0:
		return p.job(JobRestart, name, changed, false)
	case st.running() && state == "started":
		return &plan.Action{Resource: "start " + name, Op: plan.OpNone, Detail: st.ActiveState + " (" + st.SubState + ")"}
	case st.running():
		return nil
	case state == "started":
		d := or(st.ActiveState, "inactive") + " -> active"
		if len(why) > 0 {
			d += " (" + changed + ")"
		}
		return p.job(JobStart, name, d, st.ActiveState == "failed")
	case len(why) > 0:
		return &plan.Action{Resource: "restart " + name, Op: plan.OpNone, Detail: "not running: changes apply when it starts (" + changed + ")"}
	}
	return nil
}

// enabledAtBoot reports whether the unit will be enabled after this run:
// enabled is set, or it is left as is and its [Install] links exist.
func (p *planner) enabledAtBoot(u *unitPlan) bool {
	if u.u.Enabled != nil {
		return *u.u.Enabled
	}
	if u.main == nil || u.info.empty() {
		return false
	}
	links, err := installLinks(u.name(), u.file, u.info)
	if err != nil || len(links) == 0 {
		return false
	}
	for _, l := range links {
		if st, _, err := checkLink(p.root, l); err != nil || st != linkOK {
			return false
		}
	}
	return true
}

// job is an action that runs a start, stop or restart job.
func (p *planner) job(kind JobKind, name, detail string, resetFailed bool) *plan.Action {
	a := &plan.Action{Resource: string(kind) + " " + name, Op: plan.OpUpdate, Detail: detail}
	var result string
	a.Run = func(ctx context.Context) error {
		r, err := p.s.runJob(ctx, kind, name, resetFailed)
		result = r
		return err
	}
	a.Result = func() string { return detail + "; " + result }
	return a
}
