package preflight

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// Options configure Sysinfo.
type Options struct {
	// RootDir is the target root; "" means "/".
	RootDir string
	// Live probes the running kernel; nil means live exactly when RootDir
	// is "/". Offline, live probes are reported as deferred.
	Live *bool
	// Host says where live probes look; the zero value is the running
	// host.
	Host Host
	// Kernel answers whether modules can be loaded; nil reads Host's
	// paths.
	Kernel plan.Kernel
	// Ignore names probes (or dotted prefixes, or "all") whose failure
	// does not make the report fail, like preflight.ignore.
	Ignore []string
	// Kata adds the Kata probes (KVM, CPU virtualization, vhost modules)
	// as required, as for a spec with a kata runtime handler.
	Kata bool
}

// Report is the result of a probe run, printed by `nodeprov sysinfo` as
// text or as JSON: {"probes":[{"name","required","status","message"}],
// "ok":bool}.
type Report struct {
	Probes []ProbeResult `json:"probes"`
	// OK is false when a required probe failed and is not ignored.
	OK bool `json:"ok"`
}

// Sysinfo runs the same probes as the preflight stage and reports them all;
// a failed probe is part of the report, not an error. Errors are for
// probes that could not run at all: the root cannot be opened, an ignore
// entry names no probe, ctx is done.
func Sysinfo(ctx context.Context, o Options) (*Report, error) {
	if bad := unknownIgnores(o.Ignore); len(bad) > 0 {
		return nil, fmt.Errorf("sysinfo: ignore %s: no such probe", strings.Join(bad, ", "))
	}
	dir := o.RootDir
	if dir == "" {
		dir = "/"
	}
	root, err := host.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("sysinfo: %w", err)
	}
	defer root.Close()
	live := root.IsHostRoot()
	if o.Live != nil {
		live = *o.Live
	}
	var modules moduleSupporter
	if o.Kernel != nil {
		modules = o.Kernel
	}
	kata := kataOff
	if o.Kata {
		kata = kataRequired
	}
	results, err := runProbes(ctx, newSystem(o.Host, root, live, modules), tree(kata))
	if err != nil {
		return nil, fmt.Errorf("sysinfo: %w", err)
	}
	applyIgnore(results, o.Ignore)
	rep := &Report{Probes: results, OK: true}
	for _, r := range results {
		if r.blocking() {
			rep.OK = false
		}
	}
	return rep, nil
}

// Failed returns the probes that make the report fail.
func (r *Report) Failed() []ProbeResult {
	var out []ProbeResult
	for _, p := range r.Probes {
		if p.blocking() {
			out = append(out, p)
		}
	}
	return out
}

// WriteText prints one aligned line per probe, then a verdict:
//
//	PASS  kernel.release   required  found 6.18.44
//	WARN  swap             advisory  on: /dev/vda2 (2.0 GiB); …
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, p := range r.Probes {
		kind := "advisory"
		if p.Required {
			kind = "required"
		}
		msg := p.Message
		if p.Ignored && p.Status == StatusFail {
			msg += " (ignored)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", strings.ToUpper(string(p.Status)), p.Name, kind, msg)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write sysinfo: %w", err)
	}
	verdict := "ok"
	if failed := r.Failed(); len(failed) > 0 {
		names := make([]string, len(failed))
		for i, p := range failed {
			names[i] = p.Name
		}
		verdict = fmt.Sprintf("not ok: required probes failed: %s", strings.Join(names, ", "))
	}
	if _, err := fmt.Fprintln(w, verdict); err != nil {
		return fmt.Errorf("write sysinfo: %w", err)
	}
	return nil
}
