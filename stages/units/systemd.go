package units

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/nodeprov/nodeprov/stages/host"
)

// JobKind is a job the stage queues for a unit.
type JobKind string

// Jobs the stage queues.
const (
	JobStart   JobKind = "start"
	JobStop    JobKind = "stop"
	JobRestart JobKind = "restart"
)

// UnitStatus is the part of a loaded unit's state the stage decides on.
type UnitStatus struct {
	// LoadState is "loaded", "not-found", "masked", ...
	LoadState string
	// ActiveState is "active", "inactive", "failed", "activating", ...
	ActiveState string
	// SubState is the type-specific state ("running", "exited", "dead").
	SubState string
	// NeedDaemonReload is set when the unit's files changed on disk since
	// systemd loaded them.
	NeedDaemonReload bool
	// ActiveEnter is when the unit last entered the active state; zero
	// when unknown or never.
	ActiveEnter time.Time
}

// running reports a unit that runs or is getting there: one a changed
// configuration has to restart.
func (s UnitStatus) running() bool {
	switch s.ActiveState {
	case "active", "activating", "reloading", "refreshing":
		return true
	}
	return false
}

// Systemd is the live systemd manager, as far as the stage uses it. Enable,
// disable, mask and unmask are persistent (not --runtime) and replace
// conflicting links. Job queues a job in "replace" mode and, when ch is not
// nil, sends its result on ch when it finishes ("done" is success; also
// "failed", "timeout", "canceled", "dependency", "skipped"); ch must be
// buffered. Dial connects with go-systemd's dbus package; tests use fakes.
type Systemd interface {
	Reload(ctx context.Context) error
	EnableUnitFiles(ctx context.Context, names []string) error
	DisableUnitFiles(ctx context.Context, names []string) error
	MaskUnitFiles(ctx context.Context, names []string) error
	UnmaskUnitFiles(ctx context.Context, names []string) error
	Status(ctx context.Context, name string) (UnitStatus, error)
	ResetFailed(ctx context.Context, name string) error
	Job(ctx context.Context, kind JobKind, name string, ch chan<- string) (int, error)
	Close()
}

// Dial connects to the system's systemd: over the system bus, or as root
// over systemd's private socket when the bus is not up (early boot).
func Dial(ctx context.Context) (Systemd, error) {
	c, err := sdbus.NewWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to systemd: %w", err)
	}
	return &dbusSystemd{c: c}, nil
}

// dbusSystemd implements Systemd with go-systemd's dbus package.
type dbusSystemd struct{ c *sdbus.Conn }

func (d *dbusSystemd) Reload(ctx context.Context) error { return d.c.ReloadContext(ctx) }

func (d *dbusSystemd) EnableUnitFiles(ctx context.Context, names []string) error {
	_, _, err := d.c.EnableUnitFilesContext(ctx, names, false, true)
	return err
}

func (d *dbusSystemd) DisableUnitFiles(ctx context.Context, names []string) error {
	_, err := d.c.DisableUnitFilesContext(ctx, names, false)
	return err
}

func (d *dbusSystemd) MaskUnitFiles(ctx context.Context, names []string) error {
	_, err := d.c.MaskUnitFilesContext(ctx, names, false, true)
	return err
}

func (d *dbusSystemd) UnmaskUnitFiles(ctx context.Context, names []string) error {
	_, err := d.c.UnmaskUnitFilesContext(ctx, names, false)
	return err
}

func (d *dbusSystemd) Status(ctx context.Context, name string) (UnitStatus, error) {
	props, err := d.c.GetUnitPropertiesContext(ctx, name)
	if err != nil {
		return UnitStatus{}, err
	}
	s := UnitStatus{}
	s.LoadState, _ = props["LoadState"].(string)
	s.ActiveState, _ = props["ActiveState"].(string)
	s.SubState, _ = props["SubState"].(string)
	s.NeedDaemonReload, _ = props["NeedDaemonReload"].(bool)
	if us, ok := props["ActiveEnterTimestamp"].(uint64); ok && us > 0 {
		s.ActiveEnter = time.UnixMicro(int64(us))
	}
	return s, nil
}

func (d *dbusSystemd) ResetFailed(ctx context.Context, name string) error {
	return d.c.ResetFailedUnitContext(ctx, name)
}

func (d *dbusSystemd) Job(ctx context.Context, kind JobKind, name string, ch chan<- string) (int, error) {
	switch kind {
	case JobStart:
		return d.c.StartUnitContext(ctx, name, "replace", ch)
	case JobStop:
		return d.c.StopUnitContext(ctx, name, "replace", ch)
	case JobRestart:
		return d.c.RestartUnitContext(ctx, name, "replace", ch)
	}
	return 0, fmt.Errorf("unknown job %q", kind)
}

func (d *dbusSystemd) Close() { d.c.Close() }

// JobError is a start, stop or restart job that did not succeed.
type JobError struct {
	Unit string
	Job  JobKind
	// Result is the job result ("failed", "timeout", ...) or what went
	// wrong after a "done" (the unit failed right after starting).
	Result string
	// Journal holds the unit's last journal lines, or why they could not
	// be read.
	Journal string
}

func (e *JobError) Error() string {
	msg := fmt.Sprintf("%s %s: %s (see systemctl status %s)", e.Job, e.Unit, e.Result, e.Unit)
	if e.Journal == "" {
		return msg
	}
	return msg + "; last journal lines:\n" + indent(e.Journal)
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "    " + l
	}
	return strings.Join(lines, "\n")
}

// defaultJobTimeout bounds the wait for one job when Stage.JobTimeout is 0.
// systemd's own start timeouts (90 s by default) normally end a job first.
const defaultJobTimeout = 10 * time.Minute

// runJob queues a job and, unless s.NoBlock, waits for its result; a
// started or restarted unit must also not have failed right away (a
// Type=simple service reports "done" once forked). It returns the result
// for the report.
func (s Stage) runJob(ctx context.Context, kind JobKind, name string, resetFailed bool) (string, error) {
	conn, err := s.connect(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if resetFailed {
		// A unit that hit its start limit refuses to start until reset.
		if err := conn.ResetFailed(ctx, name); err != nil {
			return "", fmt.Errorf("reset-failed %s: %w", name, err)
		}
	}
	if s.NoBlock {
		id, err := conn.Job(ctx, kind, name, nil)
		if err != nil {
			return "", fmt.Errorf("%s %s: %w", kind, name, err)
		}
		return fmt.Sprintf("queued (job %d, not waited for: --no-block)", id), nil
	}
	ch := make(chan string, 1)
	if _, err := conn.Job(ctx, kind, name, ch); err != nil {
		return "", fmt.Errorf("%s %s: %w", kind, name, err)
	}
	timeout := s.JobTimeout
	if timeout <= 0 {
		timeout = defaultJobTimeout
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var result string
	select {
	case result = <-ch:
	case <-ctx.Done():
		return "", fmt.Errorf("wait for %s job of %s: %w", kind, name, ctx.Err())
	case <-timer.C:
		return "", fmt.Errorf("wait for %s job of %s: no result after %s", kind, name, timeout)
	}
	if result != "done" {
		return "", &JobError{Unit: name, Job: kind, Result: "job " + result, Journal: s.journal(ctx, name)}
	}
	if kind != JobStop {
		st, err := conn.Status(ctx, name)
		if err != nil {
			return "", fmt.Errorf("%s %s: read state: %w", kind, name, err)
		}
		if st.ActiveState == "failed" {
			return "", &JobError{Unit: name, Job: kind, Result: "job done, but the unit failed right after", Journal: s.journal(ctx, name)}
		}
	}
	return "done", nil
}

// connect opens a connection to the live systemd.
func (s Stage) connect(ctx context.Context) (Systemd, error) {
	if s.Connect != nil {
		return s.Connect(ctx)
	}
	return Dial(ctx)
}

// journal returns the unit's last journal lines for an error message.
func (s Stage) journal(ctx context.Context, name string) string {
	read := s.Journal
	if read == nil {
		read = Journal
	}
	out, err := read(ctx, name)
	if err != nil {
		return "(journal not available: " + err.Error() + ")"
	}
	return strings.TrimRight(out, "\n")
}

// Journal returns the last 20 journal lines of a unit, without metadata,
// from journalctl (sdjournal would need cgo).
func Journal(ctx context.Context, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "journalctl", "-u", name, "-n", "20", "--no-pager", "-o", "cat").Output()
	if err != nil {
		return "", fmt.Errorf("journalctl -u %s: %w", name, err)
	}
	return string(out), nil
}

// Booted reports whether systemd runs on the target: the root is the
// host's "/" and /run/systemd/system is a directory (sd_booted).
func Booted(root *host.Root) bool {
	return root.IsHostRoot() && host.SystemdBooted()
}
