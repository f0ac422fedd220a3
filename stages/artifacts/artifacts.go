// Package artifacts is the fetch and install stages: the spec's components
// and downloads, expanded for the target architecture (spec.Expand), are
// downloaded in parallel and verified into the content-addressed cache
// (fetch.go, with package fetch), then installed from the cache into the
// root — plain files, named archive members or archive trees, each target
// replaced atomically — with a record of what was installed from which
// digest, so a re-apply needs neither the network nor a re-hash
// (install.go, record.go). The two stages are reported separately, in the
// fixed order, and share one run's state: what the fetch stage verified is
// handed to the install stage here, not through plan.Env.
//
// The package also resolves pins for `nodeprov lock` and fills a cache for
// `nodeprov fetch --to` (lock.go).
package artifacts

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/nodeprov/nodeprov/fetch"
	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/archive"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// Options configure the artifacts stages of one run.
type Options struct {
	// CacheDir is the download cache (host path); empty means
	// <root>/var/cache/nodeprov.
	CacheDir string
	// Parallel bounds concurrent downloads.
	Parallel int
	// RequirePinned refuses digests taken only from the artifact's origin.
	RequirePinned bool
	// IdleTimeout fails a download that receives nothing for this long.
	IdleTimeout time.Duration
	// Progress shows downloads; nil shows nothing.
	Progress fetch.Progress
	// Pins are the lock files' digests (nil: none).
	Pins *spec.Lock
	// RegistryConfig replaces the spec's registryConfig (docker-style
	// config.json contents) when not nil.
	RegistryConfig []byte
	// Clean removes an interrupted run's partial downloads from the cache
	// (apply does; plan and check leave the cache alone).
	Clean bool
	// Pipeline installs each downloaded artifact as soon as it is
	// verified, while the other downloads are still on the wire, when no
	// other artifact's targets overlap its own (those keep the spec's
	// order in the install stage). The install stage then reports what was
	// installed. Set it only when the install stage is part of the run.
	Pipeline bool
	// Relocate, when set, replaces where each expanded artifact installs
	// (an image whose layout differs from a host's, such as a
	// systemd-sysext image that has no /usr/local); an error names the
	// artifact and stops the run before anything is fetched.
	Relocate func(spec.Artifact) (spec.Install, error)
}

// New returns the fetch and install stages of one run, sharing its state.
func New(o Options) (*Fetch, *Install) {
	r := &run{o: o, fetched: map[string]fetched{}}
	return &Fetch{r}, &Install{r}
}

// run is what the two stages of one run share.
type run struct {
	o Options

	once    sync.Once
	err     error
	arts    []spec.Artifact
	fetcher *fetch.Fetcher

	// own says which artifacts may be installed on their own, as soon as
	// they are verified (no target overlaps another artifact's); record is
	// the install record the fetch stage planned with.
	own    map[string]bool
	record *Record

	mu      sync.Mutex
	fetched map[string]fetched
	early   map[string]earlyInstall
}

// earlyInstall is an artifact installed by its download action (Pipeline).
type earlyInstall struct {
	op       plan.Op
	detail   string
	paths    []string
	rec      ArtifactRecord
	recorded bool
}

func (r *run) setEarly(name string, e earlyInstall) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.early == nil {
		r.early = map[string]earlyInstall{}
	}
	r.early[name] = e
}

func (r *run) getEarly(name string) (earlyInstall, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.early[name]
	return e, ok
}

// fetched is a verified artifact in the cache.
type fetched struct {
	Path   string // cache file (host path)
	SHA256 string // hex
	Digest string // the verified digest, "sha256:<hex>" or "sha512:<hex>"
	Trust  string // pinned, signed, same-origin
	// Members is the checked member list of an archive artifact
	// (archive.Plan with the artifact's selection), made while it
	// downloaded or, from the cache, right after, so that installing reads
	// the archive only once more; nil when not planned yet.
	Members []archive.Member
	// staged holds Members extracted next to their targets while the
	// archive downloaded (Pipeline), for the install to commit; nil when
	// the install reads the cache file.
	staged *archive.Staged
}

func (r *run) setFetched(name string, f fetched) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fetched[name] = f
}

func (r *run) getFetched(name string) (fetched, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, ok := r.fetched[name]
	return f, ok
}

// setup expands the spec's artifacts for the target architecture and
// builds the fetcher and its cache, once per run, whichever stage plans
// first.
func (r *run) setup(env *plan.Env) error {
	r.once.Do(func() { r.err = r.prepare(env) })
	return r.err
}

func (r *run) prepare(env *plan.Env) error {
	arch := env.Arch
	if arch == "" {
		arch = spec.HostArch()
	}
	arts, err := spec.Expand(env.Spec, arch)
	if err != nil {
		return err
	}
	if r.o.Relocate != nil {
		for i := range arts {
			if arts[i].Install, err = r.o.Relocate(arts[i]); err != nil {
				return fmt.Errorf("%s: %w", arts[i].SpecPath, err)
			}
		}
	}
	r.arts = arts
	if len(arts) == 0 {
		return nil
	}
	r.own = map[string]bool{}
	for i, a := range arts {
		r.own[a.Name] = true
		for j, b := range arts {
			if i != j && overlaps(targets(a.Install), targets(b.Install)) {
				r.own[a.Name] = false
			}
		}
	}
	cache := r.o.CacheDir
	if cache == "" {
		if cache, err = cacheInRoot(env.Root); err != nil {
			return err
		}
	}
	cas, err := RootCAs(env.Root, env.Spec.TLS)
	if err != nil {
		return err
	}
	regCfg := r.o.RegistryConfig
	if regCfg == nil {
		if regCfg, err = RegistryConfig(env.Root, env.Spec); err != nil {
			return err
		}
	}
	r.fetcher = &fetch.Fetcher{CacheDir: cache, Parallel: r.o.Parallel, RequirePinned: r.o.RequirePinned,
		IdleTimeout: r.o.IdleTimeout, Progress: r.o.Progress, RootCAs: cas, RegistryConfig: regCfg, Arch: env.Arch}
	if r.o.Clean {
		// Also when nothing is fetched: an interrupted run's partial
		// downloads must not stay in the cache.
		return r.fetcher.Prepare()
	}
	return nil
}

// RegistryConfig reads the spec's registryConfig inside the root; nil when
// the spec names none.
func RegistryConfig(root *host.Root, n *spec.Node) ([]byte, error) {
	if n.RegistryConfig == "" {
		return nil, nil
	}
	data, exists, err := root.ReadFile(n.RegistryConfig)
	if err != nil {
		return nil, fmt.Errorf("registryConfig: %w", err)
	}
	if !exists {
		return nil, fmt.Errorf("registryConfig: %s does not exist in the target root", n.RegistryConfig)
	}
	return data, nil
}

// cacheInRoot creates the cache directory through the root-confined layer
// and returns its host path. The fetch package works with plain paths, so
// the path must not contain a symlink that the host would resolve
// differently from the root.
func cacheInRoot(root *host.Root) (string, error) {
	if err := root.MkdirAll(host.CacheDir, 0o755); err != nil {
		return "", err
	}
	p := root.HostPath(host.CacheDir)
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", err
	}
	if real != p {
		return "", fmt.Errorf("download cache %s is reached through a symlink (%s); pass --cache with a plain directory", p, real)
	}
	return p, nil
}

// Fetch is the fetch stage.
type Fetch struct{ r *run }

// Name implements plan.Stage.
func (*Fetch) Name() string { return "fetch" }

// Plan implements plan.Stage.
func (s *Fetch) Plan(ctx context.Context, env *plan.Env) ([]*plan.Action, error) {
	if err := s.r.setup(env); err != nil {
		return nil, err
	}
	return s.r.planFetch(ctx, env)
}

// Install is the install stage.
type Install struct{ r *run }

// Name implements plan.Stage.
func (*Install) Name() string { return "install" }

// Plan implements plan.Stage.
func (s *Install) Plan(ctx context.Context, env *plan.Env) ([]*plan.Action, error) {
	if err := s.r.setup(env); err != nil {
		return nil, err
	}
	return s.r.planInstall(ctx, env)
}
