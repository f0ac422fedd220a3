package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages"
)

// downloadFlags are the flags of every command that downloads.
type downloadFlags struct {
	arch          string
	cache         string
	parallel      int
	requirePinned bool
	lockFile      string
	idleTimeout   time.Duration
	registryCfg   string
}

func addDownloadFlags(fs *flag.FlagSet) *downloadFlags {
	d := &downloadFlags{}
	fs.StringVar(&d.arch, "arch", "", "architecture to install for: amd64 or arm64 (default: this host's)")
	fs.StringVar(&d.cache, "cache", "", "download cache directory (default <root>/var/cache/nodeprov); a cache filled by `nodeprov fetch --to` needs no network")
	fs.IntVar(&d.parallel, "parallel", 4, "concurrent downloads")
	fs.BoolVar(&d.requirePinned, "require-pinned", false, "refuse digests taken only from the artifact's own origin (unsigned checksum files)")
	fs.StringVar(&d.lockFile, "lock-file", "", "lock file with pinned digests (default: nodeprov.lock next to the spec, if present; \"none\" to ignore)")
	fs.DurationVar(&d.idleTimeout, "idle-timeout", 30*time.Second, "fail a download that receives no byte for this long")
	fs.StringVar(&d.registryCfg, "registry-config", "", "docker-style config.json with credentials for oci:// sources (replaces the spec's registryConfig)")
	return d
}

// downloads are the download settings for the spec in specFile: the lock
// files' pins (pins), the flags and --registry-config.
func (d *downloadFlags) downloads(specFile string) (stages.Downloads, error) {
	pins, err := d.pins(specFile)
	if err != nil {
		return stages.Downloads{}, err
	}
	reg, err := d.registryConfig()
	if err != nil {
		return stages.Downloads{}, err
	}
	return stages.Downloads{Pins: pins, Parallel: d.parallel, RequirePinned: d.requirePinned, IdleTimeout: d.idleTimeout,
		RegistryConfig: reg}, nil
}

// downloadSpec is the start of the commands that download outside a run
// (fetch --to, mirror, sysext): one spec argument, the flags in required
// set, the spec loaded and its download settings read. On failure it has
// printed why and returns the exit code.
func downloadSpec(fs *flag.FlagSet, args []string, s ioSet, out string, dl *downloadFlags, command string, required ...*string) (*spec.Document, stages.Downloads, int, bool) {
	pos, code, ok := positional(fs, args, 1)
	if !ok {
		return nil, stages.Downloads{}, code, false
	}
	for _, r := range required {
		if *r == "" {
			fs.Usage()
			return nil, stages.Downloads{}, exitInvalid, false
		}
	}
	doc, ok := loadSpec(pos[0], s, out, command)
	if !ok {
		return nil, stages.Downloads{}, exitInvalid, false
	}
	downloads, err := dl.downloads(pos[0])
	if err != nil {
		fmt.Fprintf(s.err, "%s: %v\n", command, err)
		return nil, stages.Downloads{}, exitInvalid, false
	}
	return doc, downloads, exitOK, true
}

// registryConfig reads --registry-config; nil when not given.
func (d *downloadFlags) registryConfig() ([]byte, error) {
	if d.registryCfg == "" {
		return nil, nil
	}
	return os.ReadFile(d.registryCfg)
}

// pins reads the lock file next to the spec (or --lock-file) and, for an
// air-gapped cache, the lock file `nodeprov fetch --to` left in it.
func (d *downloadFlags) pins(specFile string) (*spec.Lock, error) {
	var required string
	var optional []string
	switch {
	case d.lockFile != "" && d.lockFile != "none":
		required = d.lockFile
	case d.lockFile == "" && specFile != "-":
		optional = append(optional, filepath.Join(filepath.Dir(specFile), spec.LockFileName))
	}
	if d.cache != "" {
		optional = append(optional, filepath.Join(d.cache, spec.LockFileName))
	}
	return spec.ReadLocks(required, optional...)
}

// progressFor shows download progress on w: bars on a terminal, plain
// periodic lines otherwise (cloud-init logs).
func progressFor(w io.Writer) stages.Progress { return stages.NewProgress(w) }

func arches(flagValue string, def []string) []string {
	if flagValue == "" {
		return def
	}
	return splitList(flagValue)
}

func runLock(ctx context.Context, args []string, s ioSet) int {
	fs := newFlags("lock", "lock [flags] spec.yaml",
		"  nodeprov lock node.yaml                 # amd64 and arm64\n  nodeprov lock --arch arm64 node.yaml", s)
	out := addOutput(fs)
	arch := fs.String("arch", "", "comma-separated architectures (default amd64,arm64)")
	root := fs.String("root", "/", "root that keyring paths are read from")
	requirePinned := fs.Bool("require-pinned", false, "refuse to lock digests taken only from the artifact's own origin (unsigned checksum files)")
	pos, code, ok := positional(fs, args, 1)
	if !ok {
		return code
	}
	if pos[0] == "-" {
		fs.Usage()
		return exitInvalid
	}
	doc, ok := loadSpec(pos[0], s, out.v, "lock")
	if !ok {
		return exitInvalid
	}
	path := filepath.Join(filepath.Dir(pos[0]), spec.LockFileName)
	lock, err := stages.WriteLock(ctx, stages.LockOptions{Spec: doc.Spec, File: path, RootDir: *root,
		Arches: arches(*arch, spec.Arches()), RequirePinned: *requirePinned})
	if err != nil {
		fmt.Fprintf(s.err, "lock: %v\n", err)
		return exitFailure
	}
	if out.v == "json" {
		writeJSON(s.out, map[string]any{"command": "lock", "ok": true, "lockFile": path, "pins": lock.Pins, "trust": lock.Trust})
	} else {
		fmt.Fprintf(s.out, "lock: wrote %d pins to %s\n", len(lock.Pins), path)
	}
	return exitOK
}

func runFetch(ctx context.Context, args []string, s ioSet) int {
	fs := newFlags("fetch", "fetch [flags] --to DIR spec.yaml",
		"  nodeprov fetch --to /media/usb/nodeprov-cache node.yaml\n  # on the air-gapped host:\n  nodeprov apply --cache /media/usb/nodeprov-cache node.yaml", s)
	out := addOutput(fs)
	to := fs.String("to", "", "cache directory to fill (required)")
	root := fs.String("root", "/", "root that keyring paths are read from")
	dl := addDownloadFlags(fs)
	doc, downloads, code, ok := downloadSpec(fs, args, s, out.v, dl, "fetch", to)
	if !ok {
		return code
	}
	o := stages.FillOptions{Spec: doc.Spec, RootDir: *root, Arches: arches(dl.arch, []string{spec.HostArch()}), To: *to,
		Downloads: downloads}
	if out.v == "text" {
		o.Progress = progressFor(s.err)
	}
	_, results, err := stages.FillCache(ctx, o)
	stages.FinishProgress(o.Progress)
	if err != nil {
		fmt.Fprintf(s.err, "fetch: %v\n", err)
		return exitFailure
	}
	if out.v == "json" {
		writeJSON(s.out, map[string]any{"command": "fetch", "ok": true, "cache": *to, "artifacts": results})
		return exitOK
	}
	for _, r := range results {
		state := "downloaded"
		if r.FromCache {
			state = "cached"
		}
		fmt.Fprintf(s.out, "  %s %s (%s, %s)\n", state, r.URL, r.Digest, r.Trust)
	}
	fmt.Fprintf(s.out, "fetch: %d artifacts verified in %s (lock: %s)\n", len(results), *to, filepath.Join(*to, spec.LockFileName))
	return exitOK
}
