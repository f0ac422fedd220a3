package stages

import (
	"fmt"
	"io"
	"strings"

	"github.com/nodeprov/nodeprov/stages/plan"
)

// TextObserver prints a run as a numbered checklist while it happens: the
// stage headers and what changed (or would change), failed or is the
// operator's; live steps deferred to first boot as one line per stage.
// Verbose also prints every unchanged action and deferred step (each
// preflight probe among them).
type TextObserver struct {
	W io.Writer
	// Diffs prints unified diffs under the actions that change files.
	Diffs bool
	// Verbose prints unchanged and deferred actions one by one.
	Verbose bool

	deferred int // deferred actions of the current stage not printed
}

// StageStarted implements Observer.
func (t *TextObserver) StageStarted(index, total int, name string) {
	fmt.Fprintf(t.W, "[%d/%d] %s\n", index, total, name)
	t.deferred = 0
}

// StageFinished implements Observer.
func (t *TextObserver) StageFinished(string) {
	if t.deferred > 0 {
		fmt.Fprintf(t.W, "  > %d live %s deferred to first boot (-v lists them)\n", t.deferred, plural(t.deferred, "step", "steps"))
	}
}

// ActionFinished implements Observer.
func (t *TextObserver) ActionFinished(stage string, a ActionReport) {
	if !t.Verbose {
		switch a.Status {
		case StatusUnchanged:
			return
		case StatusDeferred:
			t.deferred++
			return
		}
	}
	line := fmt.Sprintf("  %s %s", opSymbol(a.Op), a.Resource)
	if a.Detail != "" {
		line += ": " + a.Detail
	}
	status := string(a.Status)
	if a.Status == StatusChanged || a.Status == StatusFailed {
		status += fmt.Sprintf(" in %s", fmtMs(a.DurationMs))
	}
	fmt.Fprintf(t.W, "%s [%s]\n", line, status)
	if a.Error != "" {
		fmt.Fprintf(t.W, "      error: %s\n", a.Error)
	}
	if t.Diffs && a.Diff != "" {
		for _, l := range strings.SplitAfter(strings.TrimRight(a.Diff, "\n"), "\n") {
			fmt.Fprintf(t.W, "      %s", l)
		}
		fmt.Fprintln(t.W)
	}
}

func opSymbol(op plan.Op) string {
	switch op {
	case plan.OpCreate:
		return "+"
	case plan.OpUpdate:
		return "~"
	case plan.OpDelete:
		return "-"
	case plan.OpDeferred:
		return ">"
	case plan.OpUnmanaged:
		return "!"
	}
	return "="
}

// WriteSummary prints the closing lines of a run: counts per status,
// warnings, and the error that stopped it.
func WriteSummary(w io.Writer, r *Report) {
	counts := map[Status]int{}
	for _, s := range r.Stages {
		for _, a := range s.Actions {
			counts[a.Status]++
		}
	}
	var parts []string
	for _, st := range []Status{StatusChanged, StatusPending, StatusDrift, StatusUnchanged, StatusDeferred, StatusUnmanaged, StatusFailed} {
		if counts[st] > 0 || st == StatusUnchanged {
			parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
		}
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	fmt.Fprintf(w, "%s: %s in %s\n", r.Command, strings.Join(parts, ", "), fmtMs(r.DurationMs))
	switch {
	case r.Error != nil:
		fmt.Fprintf(w, "%s failed: %s\n", r.Command, errorText(r.Error))
	case r.Command == string(ModeCheck) && r.Drift:
		fmt.Fprintf(w, "check: drift: %d %s differ from the spec; run nodeprov apply\n", r.Changed, plural(r.Changed, "resource", "resources"))
	case r.Command == string(ModePlan) && r.Changed == 0:
		fmt.Fprintln(w, "plan: nothing to do")
	case r.Command == string(ModeApply) && r.Changed == 0:
		fmt.Fprintln(w, "apply: nothing changed")
	}
}

func errorText(e *ErrorReport) string {
	var prefix []string
	if e.Stage != "" {
		prefix = append(prefix, e.Stage)
	}
	if e.Resource != "" && !strings.HasPrefix(e.Message, e.Resource+":") {
		prefix = append(prefix, e.Resource)
	}
	if len(prefix) == 0 {
		return e.Message
	}
	return strings.Join(prefix, ": ") + ": " + e.Message
}

func fmtMs(v float64) string {
	if v < 1 {
		return fmt.Sprintf("%.0fµs", v*1000)
	}
	if v < 1000 {
		return fmt.Sprintf("%.1fms", v)
	}
	return fmt.Sprintf("%.2fs", v/1000)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
