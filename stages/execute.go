package stages

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nodeprov/nodeprov/stages/plan"

	"github.com/nodeprov/nodeprov/fetch"
	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
)

// TempLogPath lists, while an apply runs, the directories it creates
// temporary files in (see host.Root.LogTempDirs).
const TempLogPath = "/var/lib/nodeprov/temp-dirs"

// LastRunPath records the outcome of the last apply inside the root.
const LastRunPath = host.LastRunPath

// Options configure one plan, apply or check run.
type Options struct {
	Mode Mode
	Doc  *spec.Document
	// RootDir is the target root ("/" for the running host).
	RootDir string
	// Live forces live steps on or off; nil means live exactly when
	// RootDir is "/".
	Live *bool
	// Kernel is the live kernel; nil uses the host's.
	Kernel plan.Kernel
	// Stages limits the run to these stage names (all when empty).
	Stages      []string
	LockTimeout time.Duration
	Observer    Observer
	// Arch overrides the host architecture for expansion (image builds
	// for another architecture).
	Arch string
	// CacheDir is the download cache (host path); empty means
	// <root>/var/cache/nodeprov.
	CacheDir string
	// Parallel bounds concurrent downloads.
	Parallel int
	// RequirePinned refuses digests taken only from the artifact's origin.
	RequirePinned bool
	// RegistryConfig replaces the spec's registryConfig (the contents of
	// a docker-style config.json) when not nil.
	RegistryConfig []byte
	// IdleTimeout fails a download that receives nothing for this long.
	IdleTimeout time.Duration
	// Pins are the lock files' digests by upstream URL, with the trust
	// each was recorded with; nil means none.
	Pins *spec.Lock
	// Progress shows downloads; nil shows nothing.
	Progress fetch.Progress
	// OnLockWait is called once when the run has to wait for the lock.
	OnLockWait func(holder string)
	// NoBlock queues systemd start, stop and restart jobs without waiting
	// for their results (inside cloud-init or a first-boot unit).
	NoBlock bool
	// FirstBoot also installs nodeprov, the spec (and the run's pins) and
	// the enabled first-boot unit into the root, so that an image built
	// offline applies the spec live when it boots.
	FirstBoot bool
}

// Execute runs the pipeline on a target root and returns the report; the
// report's OK, Drift and Error say how it went.
func Execute(ctx context.Context, o Options) *Report {
	start := time.Now()
	rep := &Report{
		ReportVersion: ReportVersion, Command: string(o.Mode), Spec: o.Doc.File,
		SpecDigest: o.Doc.Digest, Root: o.RootDir, StartedAt: start.UTC(), Stages: []StageReport{},
	}
	finish := func(err error) *Report {
		defer rep.redact()
		rep.DurationMs = ms(time.Since(start))
		if err != nil {
			rep.OK = false
			rep.Error = &ErrorReport{Message: err.Error(), Class: errClass(err)}
			var se *StageError
			if errors.As(err, &se) {
				rep.Error.Stage, rep.Error.Resource, rep.Error.Message = se.Stage, se.Resource, se.Err.Error()
			}
			return rep
		}
		rep.OK = true
		return rep
	}
	selected, err := Select(All(o), o.Stages)
	if err != nil {
		rep.Error = &ErrorReport{Message: err.Error(), Class: "usage"}
		rep.DurationMs = ms(time.Since(start))
		return rep
	}
	root, err := host.OpenRoot(o.RootDir)
	if err != nil {
		return finish(err)
	}
	defer root.Close()
	rep.Root = root.Dir()
	live := root.IsHostRoot()
	if o.Live != nil {
		live = *o.Live
	}
	rep.Live = live
	kernel := o.Kernel
	if kernel == nil {
		kernel = host.NewKernel()
	}
	lock, err := host.AcquireRunLock(ctx, root, o.LockTimeout, o.OnLockWait)
	if err != nil {
		return finish(err)
	}
	defer lock.Release()

	if o.Mode == ModeApply {
		// Only a killed run leaves temporary files behind; remove them
		// before writing, and this run's log when it ends.
		root.LogTempDirs(TempLogPath)
		removed, err := root.SweepTemps()
		if err != nil {
			return finish(err)
		}
		if len(removed) > 0 {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("removed %d temporary files an interrupted run left: %s", len(removed), strings.Join(removed, ", ")))
		}
		defer root.DiscardTempLog()
	}
	rep.Warnings = append(rep.Warnings, unhandled(o.Doc.Spec, selected, o.FirstBoot)...)
	env := &plan.Env{Spec: o.Doc.Spec, Doc: o.Doc, Root: root, Live: live, Kernel: kernel, Changes: plan.NewChangeSet(),
		Parallel: o.Parallel, Arch: o.Arch}
	if env.Arch == "" {
		env.Arch = spec.HostArch()
	}
	env.Mode = string(o.Mode)
	stageReports, changed, runErr := run(ctx, env, selected, o.Mode, o.Observer)
	rep.Warnings = append(rep.Warnings, env.Warnings()...)
	rep.Stages = stageReports
	rep.Changed = changed
	rep.Drift = o.Mode == ModeCheck && changed > 0
	finish(runErr)
	if o.Mode == ModeApply {
		if err := recordLastRun(root, rep, live); err != nil && rep.OK {
			rep.Warnings = append(rep.Warnings, "could not record the last run: "+spec.Redact(err.Error()))
		}
	}
	return rep
}

// DefaultCacheDir is the download cache inside the target root.
const DefaultCacheDir = host.CacheDir

// LastRun is the record of the last apply, kept at LastRunPath.
type LastRun struct {
	ReportVersion int          `json:"reportVersion"`
	Command       string       `json:"command"`
	Spec          string       `json:"spec"`
	SpecDigest    string       `json:"specDigest"`
	BootID        string       `json:"bootID,omitempty"`
	StartedAt     time.Time    `json:"startedAt"`
	DurationMs    float64      `json:"durationMs"`
	OK            bool         `json:"ok"`
	Changed       int          `json:"changed"`
	Error         *ErrorReport `json:"error,omitempty"`
}

func recordLastRun(root *host.Root, rep *Report, live bool) error {
	lr := LastRun{
		ReportVersion: rep.ReportVersion, Command: rep.Command, Spec: rep.Spec, SpecDigest: rep.SpecDigest,
		StartedAt: rep.StartedAt, DurationMs: rep.DurationMs, OK: rep.OK, Changed: rep.Changed, Error: rep.Error,
	}
	if live {
		lr.BootID = host.BootID()
	}
	data, err := json.MarshalIndent(lr, "", "  ")
	if err != nil {
		return err
	}
	return root.WriteFile(LastRunPath, append(data, '\n'), host.WriteOptions{Mode: 0o644, UID: -1, GID: -1})
}

// unhandled names spec sections that no selected stage of this build acts
// on, so an operator is never left thinking they were applied.
func unhandled(n *spec.Node, selected []plan.Stage, firstBoot bool) []string {
	has := map[string]bool{}
	for _, s := range selected {
		has[s.Name()] = true
	}
	var out []string
	check := func(stage string, used bool, section string) {
		if used && !has[stage] {
			out = append(out, section+": not applied (stage "+stage+" is not part of this run)")
		}
	}
	check("kernel", len(n.Kernel.Modules)+len(n.Kernel.Sysctl) > 0, "kernel")
	check("files", len(n.Files) > 0, "files")
	c := n.Components
	artifacts := len(n.Downloads) > 0 || c.Containerd != nil || c.Runc != nil || c.CNI != nil || c.GVisor != nil || c.Crictl != nil || c.Kata != nil
	check("fetch", artifacts, "downloads and components")
	check("install", artifacts, "downloads and components")
	check("units", len(n.Units) > 0, "units")
	check("units", firstBoot, "the first-boot unit")
	return out
}
