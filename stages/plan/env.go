package plan

import (
	"context"
	"fmt"
	"sync"

	"github.com/nodeprov/nodeprov/fetch"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/archive"
	"github.com/nodeprov/nodeprov/stages/host"
)

// Kernel is the live kernel interface the kernel stage needs;
// *host.Kernel implements it.
type Kernel interface {
	ReadSysctl(key string) (value string, exists bool, err error)
	WriteSysctl(key, value string) error
	ModuleSupport() bool
	ModuleState(name string) (host.ModuleState, error)
	LoadModule(ctx context.Context, name string) error
}

// Env is what stages see: the spec, the target root, the live kernel, and
// what earlier stages changed.
type Env struct {
	Spec *spec.Node
	// Doc is the spec as loaded (what the file itself sets, for messages
	// that distinguish an explicit value from a default); nil in tests
	// that build a Spec directly.
	Doc  *spec.Document
	Root *host.Root
	// Live is true when live state (kernel, systemd) is touched; false for
	// an offline image root, where live steps are deferred to first boot.
	Live    bool
	Kernel  Kernel
	Changes *ChangeSet
	// Parallel bounds concurrently running parallel actions (downloads).
	Parallel int
	// Arch is the architecture artifacts are expanded for.
	Arch string
	// Artifacts are the spec's components and downloads expanded for Arch.
	Artifacts []spec.Artifact
	// Fetcher downloads and verifies artifacts into the cache.
	Fetcher *fetch.Fetcher
	// Pins are digests from the lock files, by upstream URL, with the
	// trust each was recorded with (nil: none).
	Pins *spec.Lock

	mu      sync.Mutex
	fetched map[string]Fetched
	// Mode is "plan", "apply" or "check"; stages that must not even
	// probe something expensive in plan mode can look at it.
	Mode string

	warnings []string
}

// Warnf records a warning for the report (an advisory probe that failed, a
// policy that only warns). Warnings never fail a run.
func (e *Env) Warnf(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.warnings = append(e.warnings, fmt.Sprintf(format, args...))
}

// Fetched is a verified artifact in the cache.
type Fetched struct {
	Path   string // cache file (host path)
	SHA256 string // hex
	Digest string // the verified digest, "sha256:<hex>" or "sha512:<hex>"
	Trust  string // pinned, signed, same-origin
	// Members is the checked member list of an archive artifact, planned
	// by the fetch stage right after the download (archive.Plan over Path
	// with the artifact's selection), so that the install stage reads the
	// archive only once more; nil when not planned yet.
	Members []archive.Member
}

// SetFetched records a verified artifact for the install stage; safe for
// concurrent use by parallel download actions.
func (e *Env) SetFetched(name string, f Fetched) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fetched == nil {
		e.fetched = map[string]Fetched{}
	}
	e.fetched[name] = f
}

// GetFetched returns the verified artifact recorded under name.
func (e *Env) GetFetched(name string) (Fetched, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f, ok := e.fetched[name]
	return f, ok
}

// Warnings returns the warnings recorded so far.
func (e *Env) Warnings() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.warnings...)
}
