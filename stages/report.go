package stages

import (
	"time"

	"github.com/nodeprov/nodeprov/stages/plan"

	"github.com/nodeprov/nodeprov/spec"
)

// Status is the outcome of one action in a report.
type Status string

// plan.Action statuses. plan reports "pending" for what apply would change and
// check reports "drift"; apply reports "changed" or "failed".
const (
	StatusChanged   Status = "changed"
	StatusUnchanged Status = "unchanged"
	StatusFailed    Status = "failed"
	StatusPending   Status = "pending"
	StatusDrift     Status = "drift"
	StatusDeferred  Status = "deferred"
	StatusUnmanaged Status = "unmanaged"
)

// ReportVersion is bumped whenever a field of Report changes meaning or is
// removed; new fields may be added without a bump.
const ReportVersion = 1

// Report is the machine-readable outcome of one command (`--output json`).
// Its fields are documented in docs/report.md and stable within a
// ReportVersion.
type Report struct {
	ReportVersion int               `json:"reportVersion"`
	Command       string            `json:"command"`
	Spec          string            `json:"spec,omitempty"`
	SpecDigest    string            `json:"specDigest,omitempty"`
	Root          string            `json:"root,omitempty"`
	Live          bool              `json:"live"`
	OK            bool              `json:"ok"`
	Drift         bool              `json:"drift"`
	Changed       int               `json:"changed"`
	StartedAt     time.Time         `json:"startedAt"`
	DurationMs    float64           `json:"durationMs"`
	Stages        []StageReport     `json:"stages"`
	Warnings      []string          `json:"warnings,omitempty"`
	Diagnostics   []spec.Diagnostic `json:"diagnostics,omitempty"`
	Error         *ErrorReport      `json:"error,omitempty"`
}

// StageReport is one stage's actions.
type StageReport struct {
	Name       string         `json:"name"`
	DurationMs float64        `json:"durationMs"`
	Actions    []ActionReport `json:"actions"`
}

// ActionReport is one action's outcome.
type ActionReport struct {
	Resource   string  `json:"resource"`
	Op         plan.Op `json:"op"`
	Status     Status  `json:"status"`
	Changed    bool    `json:"changed"`
	DurationMs float64 `json:"durationMs"`
	Detail     string  `json:"detail,omitempty"`
	Diff       string  `json:"diff,omitempty"`
	Error      string  `json:"error,omitempty"`
}

// redact replaces every secret in the action's text with spec.Redacted:
// a detail or error may quote a URL with credentials, a diff may show a
// rendered registry password.
func (a *ActionReport) redact() {
	a.Detail, a.Diff, a.Error = spec.Redact(a.Detail), spec.Redact(a.Diff), spec.Redact(a.Error)
}

// redact is ActionReport.redact for the run's own texts: the error, the
// warnings and the diagnostics (already redacted by spec; again here so no
// path into a report skips it).
func (r *Report) redact() {
	if r.Error != nil {
		r.Error.Message = spec.Redact(r.Error.Message)
	}
	seen := map[string]bool{}
	warnings := r.Warnings[:0]
	for _, w := range r.Warnings {
		// Each warning once: a stage planned twice (install after an early
		// install) or a check repeated per file must not say it twice.
		if w = spec.Redact(w); !seen[w] {
			seen[w] = true
			warnings = append(warnings, w)
		}
	}
	r.Warnings = warnings
	for i := range r.Diagnostics {
		r.Diagnostics[i].Message = spec.Redact(r.Diagnostics[i].Message)
	}
}

// ErrorReport says what stopped a run.
type ErrorReport struct {
	Stage    string `json:"stage,omitempty"`
	Resource string `json:"resource,omitempty"`
	Message  string `json:"message"`
	// Class is a stable error category: "invalid-spec", "usage", "lock",
	// "plan", "apply".
	Class string `json:"class"`
}

func ms(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

// Text is the error on one line: stage, resource and message.
func (e *ErrorReport) Text() string { return errorText(e) }
