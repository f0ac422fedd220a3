package stages

import (
	"bytes"
	"strings"
	"testing"

	"github.com/nodeprov/nodeprov/stages/plan"
)

// The default text output shows what changed, failed or is the operator's,
// and one line per stage for deferred live steps; -v shows every action.
func TestTextObserver(t *testing.T) {
	actions := []ActionReport{
		{Resource: "probe kernel.release", Op: plan.OpNone, Status: StatusUnchanged, Detail: "6.1"},
		{Resource: "sysctl net.ipv4.ip_forward", Op: plan.OpDeferred, Status: StatusDeferred},
		{Resource: "module overlay", Op: plan.OpDeferred, Status: StatusDeferred},
		{Resource: "file /etc/a", Op: plan.OpUpdate, Status: StatusChanged, Detail: "contents", DurationMs: 1.5},
		{Resource: "config /etc/containerd/config.toml", Op: plan.OpUnmanaged, Status: StatusUnmanaged},
		{Resource: "file /etc/b", Op: plan.OpCreate, Status: StatusFailed, Error: "disk full"},
	}
	run := func(verbose bool) string {
		var b bytes.Buffer
		o := &TextObserver{W: &b, Verbose: verbose}
		o.StageStarted(1, 2, "kernel")
		for _, a := range actions {
			o.ActionFinished("kernel", a)
		}
		o.StageFinished("kernel")
		o.StageStarted(2, 2, "files")
		o.StageFinished("files")
		return b.String()
	}
	want := `[1/2] kernel
  ~ file /etc/a: contents [changed in 1.5ms]
  ! config /etc/containerd/config.toml [unmanaged]
  + file /etc/b [failed in 0µs]
      error: disk full
  > 2 live steps deferred to first boot (-v lists them)
[2/2] files
`
	if got := run(false); got != want {
		t.Errorf("default output:\n%s\nwant:\n%s", got, want)
	}
	verbose := run(true)
	for _, line := range []string{"  = probe kernel.release: 6.1 [unchanged]", "  > sysctl net.ipv4.ip_forward [deferred]", "  > module overlay [deferred]"} {
		if !strings.Contains(verbose, line+"\n") {
			t.Errorf("-v output lacks %q:\n%s", line, verbose)
		}
	}
	if strings.Contains(verbose, "(-v lists them)") {
		t.Errorf("-v output summarises what it lists:\n%s", verbose)
	}
}
