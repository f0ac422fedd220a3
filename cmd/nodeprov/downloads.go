package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nodeprov/nodeprov/fetch"
	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/download"
	"github.com/nodeprov/nodeprov/stages/host"
)

// downloadFlags are the flags of every command that downloads.
type downloadFlags struct {
	arch          string
	cache         string
	parallel      int
	requirePinned bool
	lockFile      string
	idleTimeout   time.Duration
}

func addDownloadFlags(fs *flag.FlagSet) *downloadFlags {
	d := &downloadFlags{}
	fs.StringVar(&d.arch, "arch", "", "architecture to install for: amd64 or arm64 (default: this host's)")
	fs.StringVar(&d.cache, "cache", "", "download cache directory (default <root>/var/cache/nodeprov); a cache filled by `nodeprov fetch --to` needs no network")
	fs.IntVar(&d.parallel, "parallel", 4, "concurrent downloads")
	fs.BoolVar(&d.requirePinned, "require-pinned", false, "refuse digests taken only from the artifact's own origin (unsigned checksum files)")
	fs.StringVar(&d.lockFile, "lock-file", "", "lock file with pinned digests (default: nodeprov.lock next to the spec, if present; \"none\" to ignore)")
	fs.DurationVar(&d.idleTimeout, "idle-timeout", 30*time.Second, "fail a download that receives no byte for this long")
	return d
}

// pins reads the lock file next to the spec (or --lock-file) and, for an
// air-gapped cache, the lock file `nodeprov fetch --to` left in it.
func (d *downloadFlags) pins(specFile string) (*spec.Lock, error) {
	pins := spec.NewLock()
	var files []string
	explicit := d.lockFile != "" && d.lockFile != "none"
	switch {
	case explicit:
		files = append(files, d.lockFile)
	case d.lockFile == "" && specFile != "-":
		files = append(files, filepath.Join(filepath.Dir(specFile), spec.LockFileName))
	}
	if d.cache != "" {
		files = append(files, filepath.Join(d.cache, spec.LockFileName))
	}
	for i, f := range files {
		data, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) && !(explicit && i == 0) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read lock file: %w", err)
		}
		lock, err := spec.ParseLock(f, data)
		if err != nil {
			return nil, err
		}
		if err := pins.Merge(f, lock); err != nil {
			return nil, err
		}
	}
	return pins, nil
}

// progressFor shows download progress on w: bars on a terminal, plain
// periodic lines otherwise (cloud-init logs).
func progressFor(w io.Writer) fetch.Progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		tty = err == nil
	}
	return fetch.NewProgress(w, tty)
}

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
	keyrings, cas, err := loadTrust(*root, doc.Spec)
	if err != nil {
		fmt.Fprintf(s.err, "lock: %v\n", err)
		return exitFailure
	}
	cache, err := os.MkdirTemp("", "nodeprov-lock-")
	if err != nil {
		fmt.Fprintf(s.err, "lock: %v\n", err)
		return exitFailure
	}
	defer os.RemoveAll(cache)
	lock, err := download.Lock(ctx, doc.Spec, keyrings, arches(*arch, spec.Arches()), &fetch.Fetcher{CacheDir: cache, RootCAs: cas, RequirePinned: *requirePinned})
	if err != nil {
		fmt.Fprintf(s.err, "lock: %v\n", err)
		return exitFailure
	}
	path := filepath.Join(filepath.Dir(pos[0]), spec.LockFileName)
	if err := host.WriteHostFile(path, lock.Marshal(), 0o644); err != nil {
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
	pos, code, ok := positional(fs, args, 1)
	if !ok {
		return code
	}
	if *to == "" {
		fs.Usage()
		return exitInvalid
	}
	doc, ok := loadSpec(pos[0], s, out.v, "fetch")
	if !ok {
		return exitInvalid
	}
	pins, err := dl.pins(pos[0])
	if err != nil {
		fmt.Fprintf(s.err, "fetch: %v\n", err)
		return exitInvalid
	}
	keyrings, cas, err := loadTrust(*root, doc.Spec)
	if err != nil {
		fmt.Fprintf(s.err, "fetch: %v\n", err)
		return exitFailure
	}
	f := &fetch.Fetcher{CacheDir: *to, Parallel: dl.parallel, RequirePinned: dl.requirePinned, IdleTimeout: dl.idleTimeout, RootCAs: cas}
	if out.v == "text" {
		f.Progress = progressFor(s.err)
	}
	lock, results, err := download.FillCache(ctx, doc.Spec, keyrings, arches(dl.arch, []string{spec.HostArch()}), pins, f)
	if err != nil {
		fmt.Fprintf(s.err, "fetch: %v\n", err)
		return exitFailure
	}
	if err := host.WriteHostFile(filepath.Join(*to, spec.LockFileName), lock.Marshal(), 0o644); err != nil {
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

// loadTrust reads the spec's keyrings and CA certificates inside rootDir.
func loadTrust(rootDir string, n *spec.Node) (map[string]*fetch.Keyring, *x509.CertPool, error) {
	r, err := host.OpenRoot(rootDir)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	keyrings, err := download.LoadKeyrings(r, n.Keyrings)
	if err != nil {
		return nil, nil, err
	}
	cas, err := download.RootCAs(r, n.TLS)
	return keyrings, cas, err
}
