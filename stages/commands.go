package stages

import (
	"context"
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/nodeprov/nodeprov/fetch"
	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/artifacts"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/machineid"
	"github.com/nodeprov/nodeprov/stages/preflight"
)

// The commands besides plan, apply and check: their policy lives here and
// in the stage packages, so that cmd/nodeprov only parses flags and prints.

// Progress shows download progress (fetch.Progress).
type Progress = fetch.Progress

// NewProgress shows progress on w: a bar per download when w is a
// terminal, periodic plain lines otherwise (cloud-init logs). Call
// FinishProgress when the command's downloads are over.
func NewProgress(w io.Writer) Progress {
	if cols, ok := host.TerminalWidth(w); ok {
		return fetch.NewBarProgress(w, cols)
	}
	return fetch.NewLineProgress(w)
}

// FinishProgress flushes a Progress that draws on its own (the terminal
// bars, a fetch.Finisher) and stops its drawing; it does nothing for other
// Progress values, nil included, and may be called more than once.
func FinishProgress(p Progress) {
	if f, ok := p.(fetch.Finisher); ok {
		f.Wait()
	}
}

// FetchResult is one artifact `nodeprov fetch --to` verified.
type FetchResult = fetch.Result

// LockOptions configure WriteLock.
type LockOptions struct {
	// Spec is the loaded spec; File is the lock file to write.
	Spec *spec.Node
	File string
	// RootDir is where the spec's keyring and CA files are read.
	RootDir string
	// Arches to resolve for.
	Arches []string
	// RequirePinned refuses to lock same-origin digests.
	RequirePinned bool
}

// WriteLock resolves and verifies the digest of every artifact of the spec
// for each architecture (`nodeprov lock`) and writes the lock file.
func WriteLock(ctx context.Context, o LockOptions) (*spec.Lock, error) {
	keyrings, cas, err := loadTrust(o.RootDir, o.Spec)
	if err != nil {
		return nil, err
	}
	cache, err := os.MkdirTemp("", "nodeprov-lock-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(cache)
	regCfg, err := registryConfig(o.RootDir, o.Spec, nil)
	if err != nil {
		return nil, err
	}
	lock, err := artifacts.Lock(ctx, o.Spec, keyrings, o.Arches, &fetch.Fetcher{CacheDir: cache, RootCAs: cas,
		RequirePinned: o.RequirePinned, RegistryConfig: regCfg})
	if err != nil {
		return nil, err
	}
	return lock, writeHostFile(o.File, lock.Marshal())
}

// FillOptions configure FillCache.
type FillOptions struct {
	Spec    *spec.Node
	RootDir string // where keyring and CA files are read
	Arches  []string
	// To is the cache directory to fill; its lock file is written there.
	To string
	Downloads
}

// Downloads are the download settings of the commands that fetch outside
// a run: fetch --to, mirror and sysext.
type Downloads struct {
	Pins          *spec.Lock
	Parallel      int
	RequirePinned bool
	IdleTimeout   time.Duration
	Progress      Progress
	// RegistryConfig replaces the spec's registryConfig when not nil.
	RegistryConfig []byte
}

// FillCache downloads and verifies every artifact into a cache directory
// for an air-gapped host (`nodeprov fetch --to`) and writes the lock of
// what it verified next to them.
func FillCache(ctx context.Context, o FillOptions) (*spec.Lock, []FetchResult, error) {
	keyrings, cas, err := loadTrust(o.RootDir, o.Spec)
	if err != nil {
		return nil, nil, err
	}
	regCfg, err := registryConfig(o.RootDir, o.Spec, o.RegistryConfig)
	if err != nil {
		return nil, nil, err
	}
	f := &fetch.Fetcher{CacheDir: o.To, Parallel: o.Parallel, RequirePinned: o.RequirePinned, IdleTimeout: o.IdleTimeout,
		RootCAs: cas, Progress: o.Progress, RegistryConfig: regCfg}
	lock, results, err := artifacts.FillCache(ctx, o.Spec, keyrings, o.Arches, o.Pins, f)
	if err != nil {
		return nil, results, err
	}
	return lock, results, writeHostFile(filepath.Join(o.To, spec.LockFileName), lock.Marshal())
}

// loadTrust reads the spec's keyrings and CA certificates inside rootDir.
func loadTrust(rootDir string, n *spec.Node) (map[string]*fetch.Keyring, *x509.CertPool, error) {
	r, err := host.OpenRoot(rootDir)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	keyrings, err := artifacts.LoadKeyrings(r, n.Keyrings)
	if err != nil {
		return nil, nil, err
	}
	cas, err := artifacts.RootCAs(r, n.TLS)
	return keyrings, cas, err
}

// registryConfig is override, or the spec's registryConfig read inside
// rootDir.
func registryConfig(rootDir string, n *spec.Node, override []byte) ([]byte, error) {
	if override != nil || n.RegistryConfig == "" {
		return override, nil
	}
	r, err := host.OpenRoot(rootDir)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return artifacts.RegistryConfig(r, n)
}

// writeHostFile atomically replaces a file that belongs to no target root
// (a lock file next to the spec or in a cache directory), with the temp,
// fsync and rename steps of a root write, confined to the file's own
// directory.
func writeHostFile(path string, data []byte) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	r, err := host.OpenRoot(filepath.Dir(abs))
	if err != nil {
		return err
	}
	defer r.Close()
	return r.WriteFile("/"+filepath.Base(abs), data, host.WriteOptions{Mode: 0o644, UID: -1, GID: -1})
}

// SealOptions and SealResult are `nodeprov seal`'s (machineid.Seal).
type (
	SealOptions = machineid.SealOptions
	SealResult  = machineid.SealResult
)

// Seal prepares the image root rootDir for cloning (machineid.Seal). It
// takes the run lock itself.
func Seal(ctx context.Context, rootDir string, o SealOptions) (*SealResult, error) {
	r, err := host.OpenRoot(rootDir)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return machineid.Seal(ctx, r, o)
}

// SysinfoOptions and SysinfoReport are `nodeprov sysinfo`'s.
type (
	SysinfoOptions = preflight.Options
	SysinfoReport  = preflight.Report
)

// Sysinfo runs the preflight probes as a report.
func Sysinfo(ctx context.Context, o SysinfoOptions) (*SysinfoReport, error) {
	return preflight.Sysinfo(ctx, o)
}
