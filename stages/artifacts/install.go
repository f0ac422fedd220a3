package artifacts

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/archive"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// planInstall plans the install stage. Artifacts are planned
// concurrently (reading an archive to list and hash its members is most of
// the work), and their installs are parallel actions: they write disjoint
// targets (overlapping ones run in order) and each is decompression-bound,
// so a cold apply uses every core.
func (r *run) planInstall(ctx context.Context, env *plan.Env) ([]*plan.Action, error) {
	if len(r.arts) == 0 {
		return nil, nil
	}
	old := LoadRecord(env.Root)
	next := &Record{Version: 1, Artifacts: map[string]ArtifactRecord{}}
	var mu sync.Mutex
	setRecord := func(name string, r ArtifactRecord) {
		mu.Lock()
		defer mu.Unlock()
		next.Artifacts[name] = r
	}

	actions := make([]*plan.Action, len(r.arts))
	errs := make([]error, len(r.arts))
	sem := make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))
	var wg sync.WaitGroup
	for i, art := range r.arts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if e, ok := r.getEarly(art.Name); ok {
				actions[i] = e.report(art, setRecord)
				return
			}
			actions[i], errs[i] = r.planArtifact(env, old, setRecord, art)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.arts[i].SpecPath, err)
		}
	}
	markParallel(actions)
	links, err := planLinks(env.Root, r.arts)
	if err != nil {
		return nil, err
	}
	actions = append(actions, links...)

	for name := range old.Artifacts {
		if _, ok := next.Artifacts[name]; !ok && !inSpec(r.arts, name) {
			env.Warnf("install: %s is no longer in the spec; its files stay installed (remove them by hand if unwanted)", name)
		}
	}
	return append(actions, recordAction(env.Root, old, next, actions)), nil
}

// planLinks plans the symbolic links of every artifact, in spec order.
// They come after the installs (which run in parallel) and are not
// parallel themselves, so a link is made once the file it points at is in
// place; each is root-confined and replaced atomically like any file.
func planLinks(root *host.Root, arts []spec.Artifact) ([]*plan.Action, error) {
	var out []*plan.Action
	for _, art := range arts {
		for _, l := range slices.Sorted(maps.Keys(art.Install.Links)) {
			target := art.Install.Links[l]
			a, err := plan.PlanSymlink(root, "link "+l, l, target)
			if err != nil {
				return nil, fmt.Errorf("%s: link %s: %w", art.SpecPath, l, err)
			}
			if a.Run != nil {
				link := a.Run
				a.Run = func(ctx context.Context) error {
					if err := root.MkdirAll(path.Dir(l), 0o755); err != nil {
						return err
					}
					return link(ctx)
				}
			}
			out = append(out, a)
		}
	}
	return out, nil
}

// markParallel lets installs run concurrently unless a target of one is, or
// is under, a target of another: those keep the spec's order.
func markParallel(actions []*plan.Action) {
	for i, a := range actions {
		a.Parallel = true
		for j, b := range actions {
			if i != j && overlaps(a.Paths, b.Paths) {
				a.Parallel = false
				break
			}
		}
	}
}

func overlaps(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y || strings.HasPrefix(x, strings.TrimSuffix(y, "/")+"/") || strings.HasPrefix(y, strings.TrimSuffix(x, "/")+"/") {
				return true
			}
		}
	}
	return false
}

func inSpec(arts []spec.Artifact, name string) bool {
	for _, a := range arts {
		if a.Name == name {
			return true
		}
	}
	return false
}

// PinnedDigest is the digest the spec or the lock file pins for art, or "".
func PinnedDigest(art spec.Artifact, pins *spec.Lock) (digest, trust string) {
	switch {
	case art.SHA256 != "":
		return "sha256:" + art.SHA256, spec.TrustPinned
	case art.SHA512 != "":
		return "sha512:" + art.SHA512, spec.TrustPinned
	}
	return pins.Pin(art.Upstream)
}

// recordFunc records what an artifact installed, for the install record.
type recordFunc func(name string, r ArtifactRecord)

// installNow installs art right after its download was verified (Pipeline):
// the same plan and the same atomic writes as the install stage, sooner.
func (r *run) installNow(ctx context.Context, env *plan.Env, art spec.Artifact) error {
	var e earlyInstall
	a, err := r.planArtifact(env, r.record, func(_ string, rec ArtifactRecord) { e.rec, e.recorded = rec, true }, art)
	if err != nil {
		return fmt.Errorf("install %s: %w", art.Name, err)
	}
	if a.Op.Changes() {
		if err := a.Run(ctx); err != nil {
			return fmt.Errorf("install %s: %w", art.Name, err)
		}
	}
	e.op, e.detail, e.paths = a.Op, a.Detail, a.Paths
	r.setEarly(art.Name, e)
	return nil
}

// report is the install stage's action for an artifact its download
// action installed already: what was done, recorded, nothing left to run.
func (e earlyInstall) report(art spec.Artifact, setRecord recordFunc) *plan.Action {
	if e.recorded {
		setRecord(art.Name, e.rec)
	}
	a := &plan.Action{Resource: "install " + art.Name, Op: e.op, Detail: e.detail, Paths: e.paths}
	if e.op.Changes() {
		a.Detail += " (installed as soon as it was verified)"
		a.Run = func(context.Context) error { return nil }
	}
	return a
}

func (r *run) planArtifact(env *plan.Env, old *Record, setRecord recordFunc, art spec.Artifact) (*plan.Action, error) {
	a := &plan.Action{Resource: "install " + art.Name, Paths: targets(art.Install)}
	pinned, _ := PinnedDigest(art, r.o.Pins)
	if rec, ok := old.Intact(env.Root, art, pinned); ok {
		setRecord(art.Name, rec)
		a.Op, a.Detail, a.Paths = plan.OpNone, fmt.Sprintf("%d files from %s", len(rec.Files), short(rec.Digest)), nil
		return a, nil
	}
	f, ok := r.getFetched(art.Name)
	if !ok {
		// Only in plan and check: the download is still pending.
		a.Op, a.Detail = plan.OpCreate, "from "+art.URL+" once downloaded"
		a.Run = func(context.Context) error { return fmt.Errorf("%s was not downloaded", art.Name) }
		return a, nil
	}
	if art.Install.Archive() {
		return planArchive(env, setRecord, art, f, a)
	}
	return planFile(env, setRecord, art, f, a)
}

func planFile(env *plan.Env, setRecord recordFunc, art spec.Artifact, f fetched, a *plan.Action) (*plan.Action, error) {
	p, mode := art.Install.Path, art.Install.Mode
	st, err := env.Root.Lstat(p)
	if err != nil {
		return nil, err
	}
	record := func() error {
		fr, err := fileRecord(env.Root, p, f.SHA256)
		if err != nil {
			return err
		}
		setRecord(art.Name, ArtifactRecord{URL: art.Upstream, Digest: f.Digest, Files: map[string]FileRecord{p: fr}})
		return nil
	}
	if st.Exists && st.Type == 0 && st.Mode == mode && st.UID == 0 && st.GID == 0 {
		sum, err := hashRootFile(env.Root, p)
		if err != nil {
			return nil, err
		}
		if sum == f.SHA256 {
			a.Op, a.Detail, a.Paths = plan.OpNone, "matches "+short(f.Digest), nil
			return a, record()
		}
	}
	a.Op = plan.OpCreate
	if st.Exists {
		a.Op = plan.OpUpdate
	}
	a.Detail = fmt.Sprintf("%s (%s, %s) -> %s mode %s", art.URL, short(f.Digest), f.Trust, p, plan.Octal(mode))
	a.Run = func(ctx context.Context) error {
		src, err := os.Open(f.Path)
		if err != nil {
			return err
		}
		defer src.Close()
		// The cache file was verified when it was fetched; hash it again on
		// the way in, so a cache tampered with since never reaches the target.
		v := archive.CheckedReader(src, -1, f.SHA256, func(got string) error {
			return fmt.Errorf("cache file %s changed since it was verified: want sha256:%s got sha256:%s", f.Path, f.SHA256, got)
		})
		if _, err := env.Root.WriteFileFrom(p, v, host.WriteOptions{Mode: mode, UID: 0, GID: 0}); err != nil {
			return err
		}
		return record()
	}
	return a, nil
}

func planArchive(env *plan.Env, setRecord recordFunc, art spec.Artifact, f fetched, a *plan.Action) (*plan.Action, error) {
	sel := archive.SelectionOf(art.Install)
	open := func() (io.ReadCloser, error) { return os.Open(f.Path) }
	members := f.Members
	if members == nil {
		var err error
		if members, err = readMembers(open, sel); err != nil {
			return nil, err
		}
	}
	var changed []string
	files := map[string]FileRecord{}
	for _, m := range members {
		same, err := matches(env.Root, m)
		if err != nil {
			return nil, err
		}
		if !same {
			changed = append(changed, m.Target)
		}
	}
	record := func() error {
		for _, m := range members {
			fr, err := fileRecord(env.Root, m.Target, m.SHA256)
			if err != nil {
				return err
			}
			files[m.Target] = fr
		}
		setRecord(art.Name, ArtifactRecord{URL: art.Upstream, Digest: f.Digest, Files: files})
		return nil
	}
	if len(changed) == 0 {
		a.Op, a.Detail, a.Paths = plan.OpNone, fmt.Sprintf("%d files match %s", len(members), short(f.Digest)), nil
		return a, record()
	}
	sort.Strings(changed)
	a.Op, a.Paths = plan.OpUpdate, changed
	a.Detail = fmt.Sprintf("%s (%s, %s): %s", art.URL, short(f.Digest), f.Trust, strings.Join(changed, ", "))
	a.Run = func(ctx context.Context) error {
		if f.staged != nil {
			// Extracted while the verified bytes arrived: only the
			// changed members are renamed into place.
			for i := range f.staged.Members {
				m := &f.staged.Members[i]
				m.Unchanged = !slices.Contains(changed, m.Target)
			}
			if err := f.staged.Commit(); err != nil {
				return err
			}
			return record()
		}
		// members were planned from this verified cache file: one more
		// pass installs them, checking every member's bytes again.
		if _, err := archive.InstallPlanned(ctx, env.Root, open, sel, archive.DefaultLimits(), members); err != nil {
			return err
		}
		return record()
	}
	return a, nil
}

func readMembers(open func() (io.ReadCloser, error), sel archive.Selection) ([]archive.Member, error) {
	r, err := open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return archive.Plan(r, sel, archive.DefaultLimits())
}

// matches reports whether a member's target already has its bytes and mode.
func matches(root *host.Root, m archive.Member) (bool, error) {
	st, err := root.Lstat(m.Target)
	if err != nil || !st.Exists || st.Type != 0 || st.Size != m.Size || st.Mode != m.Mode {
		return false, err
	}
	sum, err := hashRootFile(root, m.Target)
	return sum == m.SHA256, err
}

// recordAction writes the install record when it differs from the one on
// disk; it runs last, after every install of the stage.
func recordAction(root *host.Root, old, next *Record, actions []*plan.Action) *plan.Action {
	a := &plan.Action{Resource: "install record " + RecordPath, Op: plan.OpNone, Paths: []string{RecordPath}}
	pending := false
	for _, x := range actions {
		pending = pending || x.Op.Changes()
	}
	oldData, _ := old.Marshal()
	nextData, _ := next.Marshal()
	if !pending && bytes.Equal(oldData, nextData) {
		if _, exists, _ := root.ReadFile(RecordPath); exists || len(next.Artifacts) == 0 {
			return a
		}
	}
	a.Op, a.Detail = plan.OpUpdate, "what was installed from which digest"
	a.Run = func(context.Context) error {
		data, err := next.Marshal()
		if err != nil {
			return err
		}
		return root.WriteFile(RecordPath, data, host.WriteOptions{Mode: 0o644, UID: 0, GID: 0})
	}
	return a
}

func targets(in spec.Install) []string {
	switch {
	case in.Path != "":
		return []string{in.Path}
	case len(in.Files) > 0:
		out := make([]string, 0, len(in.Files))
		for _, t := range in.Files {
			out = append(out, t)
		}
		sort.Strings(out)
		return out
	}
	return []string{in.To}
}

func hashRootFile(root *host.Root, p string) (string, error) {
	f, err := root.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func short(digest string) string {
	if i := strings.IndexByte(digest, ':'); i > 0 && len(digest) > i+13 {
		return digest[:i+13] + "…"
	}
	return digest
}
