package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nodeprov/nodeprov/schema"
	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages"
)

// newFlags returns a flag set whose --help shows the command's synopsis
// and example.
func newFlags(name, synopsis, example string, s ioSet) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(s.err)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: nodeprov %s\n\n", synopsis)
		fmt.Fprintln(w, "Flags:")
		fs.PrintDefaults()
		fmt.Fprintf(w, "\nExample:\n%s\n", example)
	}
	if s.onFlags != nil {
		s.onFlags(synopsis, fs)
	}
	return fs
}

// parseArgs parses flags that may come before or after the positional
// arguments ("apply node.yaml --root /mnt").
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

type outputFlag struct{ v string }

func (o *outputFlag) String() string { return o.v }
func (o *outputFlag) Set(s string) error {
	if s != "text" && s != "json" {
		return fmt.Errorf("expected text or json")
	}
	o.v = s
	return nil
}

func addOutput(fs *flag.FlagSet) *outputFlag {
	o := &outputFlag{v: "text"}
	fs.Var(o, "output", "output format: text or json")
	fs.Var(o, "o", "shorthand for --output")
	return o
}

// helpRequested reports a --help parse result, which is not an error.
// positional parses args and expects exactly n positional arguments. When
// it returns false, the command exits with code (usage was printed for a
// wrong count; --help exits 0).
func positional(fs *flag.FlagSet, args []string, n int) (pos []string, code int, ok bool) {
	return positionalRange(fs, args, n, n)
}

// positionalRange is positional for commands that take min to max
// arguments (max < 0: no limit).
func positionalRange(fs *flag.FlagSet, args []string, min, max int) (pos []string, code int, ok bool) {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, parseExit(err), false
	}
	if len(pos) < min || max >= 0 && len(pos) > max {
		fs.Usage()
		return nil, exitInvalid, false
	}
	return pos, exitOK, true
}

func parseExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitInvalid
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// loadSpec loads a spec and prints its diagnostics; ok is false when the
// command must stop with exit code 2.
func loadSpec(name string, s ioSet, out string, command string) (*spec.Document, bool) {
	return loadSpecs([]string{name}, s, out, command)
}

// loadSpecs loads a layered spec: names[0] with the fragments names[1:]
// and those in its node.d directory merged over it (spec.LoadFiles).
func loadSpecs(names []string, s ioSet, out string, command string) (*spec.Document, bool) {
	name := names[0]
	start := time.Now()
	doc, err := spec.LoadFiles(names, s.in)
	if err == nil {
		return doc, true
	}
	rep := &stages.Report{ReportVersion: stages.ReportVersion, Command: command, Spec: name, Stages: []stages.StageReport{},
		StartedAt: start.UTC(), DurationMs: float64(time.Since(start).Microseconds()) / 1000}
	var ds *spec.Diagnostics
	if errors.As(err, &ds) {
		rep.Diagnostics = ds.Items
		rep.Error = &stages.ErrorReport{Message: problems(len(ds.Items), name), Class: "invalid-spec"}
	} else {
		rep.Error = &stages.ErrorReport{Message: err.Error(), Class: "invalid-spec"}
	}
	if out == "json" {
		writeJSON(s.out, rep)
	}
	// Also with -o json: logs that keep only stderr (cloud-init's output
	// log, the journal) must say what is wrong, not only the report.
	if ds != nil {
		fmt.Fprint(s.err, ds.Pretty())
		fmt.Fprintf(s.err, "%s: %s\n", command, rep.Error.Message)
	} else {
		fmt.Fprintf(s.err, "%s: %v\n", command, err)
	}
	return nil, false
}

// problems says how many problems a spec has.
func problems(n int, name string) string {
	if n == 1 {
		return "1 problem in " + name
	}
	return fmt.Sprintf("%d problems in %s", n, name)
}

func runValidate(ctx context.Context, args []string, s ioSet) int {
	fs := newFlags("validate", "validate [flags] spec.yaml|- [fragment.yaml...]",
		"  nodeprov validate examples/k8s-worker.yaml\n  cat node.yaml | nodeprov validate -o json -\n  nodeprov validate base.yaml site.yaml   # a fragment merged over the base", s)
	out := addOutput(fs)
	pos, code, ok := positionalRange(fs, args, 1, -1)
	if !ok {
		return code
	}
	doc, ok := loadSpecs(pos, s, out.v, "validate")
	if !ok {
		return exitInvalid
	}
	if out.v == "json" {
		writeJSON(s.out, &stages.Report{ReportVersion: stages.ReportVersion, Command: "validate", Spec: doc.File,
			SpecDigest: doc.Digest, OK: true, Stages: []stages.StageReport{}})
	} else {
		fmt.Fprintf(s.out, "%s: valid\n", doc.File)
	}
	return exitOK
}

func runMode(mode string) func(context.Context, []string, ioSet) int {
	return func(ctx context.Context, args []string, s ioSet) int {
		examples := map[string]string{
			"plan":  "  nodeprov plan --root /mnt/image node.yaml\n  nodeprov plan --expanded node.yaml",
			"apply": "  sudo nodeprov apply node.yaml\n  nodeprov apply --root /mnt/image -o json node.yaml > report.json\n  nodeprov apply --image node.yaml && nodeprov seal   # golden-image build VM",
			"check": "  nodeprov check node.yaml || echo \"drift (exit 3) or failure (exit 1)\"",
		}
		fs := newFlags(mode, mode+" [flags] spec.yaml|- [fragment.yaml...]", examples[mode], s)
		out := addOutput(fs)
		root := fs.String("root", "/", "target root directory; anything but / is an offline image root")
		only := fs.String("stages", "", "comma-separated stages to run (default all): "+strings.Join(stages.Order, ","))
		lockTimeout := fs.Duration("lock-timeout", 5*time.Minute, "how long to wait for another run's lock (0: fail at once)")
		live := fs.String("live", "auto", "touch live state (kernel, systemd): auto (when --root is /), yes, no")
		noBlock := fs.Bool("no-block", false, "queue systemd start/stop/restart jobs without waiting for them (inside cloud-init or a first-boot unit); plan and check run no jobs")
		firstBoot := fs.Bool("install-firstboot", false, "also install nodeprov, the spec (and lock) and the enabled nodeprov-firstboot.service, which applies the spec live on the image's first boot")
		image := fs.Bool("image", false, "golden-image build: shorthand for --live no --install-firstboot")
		verbose := fs.Bool("v", false, "text output: also list unchanged actions, every preflight probe and each deferred live step")
		dl := addDownloadFlags(fs)
		var expanded *bool
		if mode == "plan" {
			expanded = fs.Bool("expanded", false, "print the spec with defaults applied instead of planning")
		}
		pos, code, ok := positionalRange(fs, args, 1, -1)
		if !ok {
			return code
		}
		liveOpt, err := parseLive(*live)
		if err != nil {
			fmt.Fprintf(s.err, "%s: --live: %v\n", mode, err)
			return exitInvalid
		}
		if *image {
			if liveOpt != nil && *liveOpt {
				fmt.Fprintf(s.err, "%s: --image builds an image offline and cannot be combined with --live %s\n", mode, *live)
				return exitInvalid
			}
			off := false
			liveOpt, *firstBoot = &off, true
		}
		doc, ok := loadSpecs(pos, s, out.v, mode)
		if !ok {
			return exitInvalid
		}
		if expanded != nil && *expanded {
			return printExpanded(doc, dl.arch, s, out.v)
		}
		pins, err := dl.pins(pos[0])
		if err != nil {
			fmt.Fprintf(s.err, "%s: %v\n", mode, err)
			return exitInvalid
		}
		regCfg, err := dl.registryConfig()
		if err != nil {
			fmt.Fprintf(s.err, "%s: %v\n", mode, err)
			return exitInvalid
		}
		opts := stages.Options{RegistryConfig: regCfg,
			Mode: stages.Mode(mode), Doc: doc, RootDir: *root, Live: liveOpt,
			Stages: splitList(*only), LockTimeout: *lockTimeout,
			Arch: dl.arch, CacheDir: dl.cache, Parallel: dl.parallel, RequirePinned: dl.requirePinned,
			IdleTimeout: dl.idleTimeout, Pins: pins, NoBlock: *noBlock, FirstBoot: *firstBoot,
			OnLockWait: func(holder string) {
				fmt.Fprintf(s.err, "%s: waiting for another nodeprov run to finish (%s; --lock-timeout %s)\n", mode, orUnknown(holder), *lockTimeout)
			},
		}
		if out.v == "text" {
			fmt.Fprintf(s.out, "nodeprov %s %s (root %s)\n", mode, doc.File, *root)
			opts.Observer = &stages.TextObserver{W: s.out, Diffs: mode != "apply", Verbose: *verbose}
			opts.Progress = progressFor(s.err)
		}
		rep := stages.Execute(ctx, opts)
		stages.FinishProgress(opts.Progress)
		if out.v == "json" {
			writeJSON(s.out, rep)
			if rep.Error != nil {
				fmt.Fprintf(s.err, "%s: %s\n", mode, rep.Error.Text())
			}
		} else {
			stages.WriteSummary(s.out, rep)
		}
		switch {
		case rep.Error != nil && rep.Error.Class == "usage":
			return exitInvalid
		case rep.Error != nil:
			return exitFailure
		case rep.Drift:
			return exitDrift
		}
		return exitOK
	}
}

func parseLive(v string) (*bool, error) {
	switch v {
	case "auto":
		return nil, nil
	case "yes", "true":
		t := true
		return &t, nil
	case "no", "false":
		f := false
		return &f, nil
	}
	return nil, fmt.Errorf("expected auto, yes or no, got %q", v)
}

func orUnknown(s string) string {
	if s == "" {
		return "holder unknown"
	}
	return s
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// printExpanded prints the spec with defaults applied and, for arch (this
// host's when empty), the artifacts its components and downloads expand to.
func printExpanded(doc *spec.Document, arch string, s ioSet, out string) int {
	if arch == "" {
		arch = spec.HostArch()
	}
	arts, err := spec.Expand(doc.Spec, arch)
	if err != nil {
		fmt.Fprintf(s.err, "plan: %v\n", err)
		return exitInvalid
	}
	if out == "json" {
		writeJSON(s.out, map[string]any{"spec": doc.Spec, "arch": arch, "artifacts": arts})
		return exitOK
	}
	b, err := spec.Marshal(doc.Spec)
	if err != nil {
		fmt.Fprintf(s.err, "plan: %v\n", err)
		return exitFailure
	}
	s.out.Write(b)
	fmt.Fprint(s.out, spec.DescribeArtifacts(arts, arch))
	return exitOK
}

func runSeal(ctx context.Context, args []string, s ioSet) int {
	fs := newFlags("seal", "seal [flags]", "  nodeprov apply --root /mnt/image node.yaml && nodeprov seal --root /mnt/image", s)
	out := addOutput(fs)
	root := fs.String("root", "/", "image root to seal")
	empty := fs.Bool("empty", false, "leave /etc/machine-id empty instead of \"uninitialized\" (a new id at boot, but not a first boot)")
	cleanCache := fs.Bool("clean-cache", false, "also remove the download cache /var/cache/nodeprov")
	_, code, ok := positional(fs, args, 0)
	if !ok {
		return code
	}
	// Seal takes the run lock itself and removes the lock file last.
	res, err := stages.Seal(ctx, *root, stages.SealOptions{Empty: *empty, CleanCache: *cleanCache})
	if err != nil {
		fmt.Fprintf(s.err, "seal: %v\n", err)
		return exitFailure
	}
	if out.v == "json" {
		writeJSON(s.out, res)
		return exitOK
	}
	for _, st := range res.Steps {
		state := "unchanged"
		if st.Changed {
			state = "changed"
		}
		fmt.Fprintf(s.out, "  %s: %s [%s]\n", st.Resource, st.Detail, state)
	}
	fmt.Fprintln(s.out, res.Summary())
	return exitOK
}

func runSysinfo(ctx context.Context, args []string, s ioSet) int {
	fs := newFlags("sysinfo", "sysinfo [flags]", "  nodeprov sysinfo\n  nodeprov sysinfo --kata\n  nodeprov sysinfo -o json --ignore kernel.config.CONFIG_NETFILTER_XT_MATCH_IPVS", s)
	out := addOutput(fs)
	root := fs.String("root", "/", "target root; probes of live host state are deferred unless it is /")
	live := fs.String("live", "auto", "probe live host state: auto (when --root is /), yes, no")
	ignore := fs.String("ignore", "", "comma-separated probe names (or dotted prefixes) whose failure only warns")
	kata := fs.Bool("kata", false, "also probe what Kata Containers needs (KVM, CPU virtualization, vhost modules), as required")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return parseExit(err)
	}
	liveOpt, err := parseLive(*live)
	if err != nil || len(pos) != 0 {
		fs.Usage()
		return exitInvalid
	}
	rep, err := stages.Sysinfo(ctx, stages.SysinfoOptions{RootDir: *root, Live: liveOpt, Ignore: splitList(*ignore), Kata: *kata})
	if err != nil {
		fmt.Fprintf(s.err, "sysinfo: %v\n", err)
		return exitInvalid
	}
	if out.v == "json" {
		writeJSON(s.out, rep)
	} else if err := rep.WriteText(s.out); err != nil {
		return exitFailure
	}
	if !rep.OK {
		return exitFailure
	}
	return exitOK
}

func runSchema(ctx context.Context, args []string, s ioSet) int {
	fs := newFlags("schema", "schema", "  nodeprov schema > nodeprov.schema.json", s)
	_, code, ok := positional(fs, args, 0)
	if !ok {
		return code
	}
	s.out.Write(schema.JSON())
	return exitOK
}
