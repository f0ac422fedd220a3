package artifacts

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/nodeprov/nodeprov/fetch"
	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/archive"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// planFetch plans the fetch stage. An artifact already installed as
// recorded needs nothing; one whose digest is known and cached is reused;
// the rest become parallel download actions. Digests come from the spec,
// the lock file, or (costing one small request) the artifact's checksum
// file.
func (r *run) planFetch(ctx context.Context, env *plan.Env) ([]*plan.Action, error) {
	if len(r.arts) == 0 {
		return nil, nil
	}
	// Keyrings are parsed (keys read, self-signatures checked) only when
	// an artifact is to be verified: a warm re-apply needs none.
	keyrings := sync.OnceValues(func() (map[string]*fetch.Keyring, error) {
		return LoadKeyrings(env.Root, env.Spec.Keyrings)
	})
	rec := LoadRecord(env.Root)
	r.record = rec
	var actions []*plan.Action
	for _, art := range r.arts {
		a, err := r.planDownload(ctx, env, rec, keyrings, art)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", art.SpecPath, err)
		}
		actions = append(actions, a)
	}
	return actions, nil
}

func (r *run) planDownload(ctx context.Context, env *plan.Env, rec *Record, keyrings func() (map[string]*fetch.Keyring, error), art spec.Artifact) (*plan.Action, error) {
	a := &plan.Action{Resource: "download " + art.Name}
	// The trust policy first: an artifact installed or cached by an
	// earlier run is held to this run's policy too. It judges the
	// request's sources, not their keys.
	sources, err := Request(art, nil, r.o.Pins)
	if err != nil {
		return nil, err
	}
	if err := r.fetcher.Admit(sources); err != nil {
		return nil, err
	}
	pinned, _ := PinnedDigest(art, r.o.Pins)
	if _, ok := rec.Intact(env.Root, art, pinned); ok {
		a.Op, a.Detail = plan.OpNone, "installed, nothing to fetch"
		return a, nil
	}
	rings, err := keyrings()
	if err != nil {
		return nil, err
	}
	req, err := Request(art, rings, r.o.Pins)
	if err != nil {
		return nil, err
	}
	if req.Pinned == nil && req.Signature != nil {
		// A detached signature covers the artifact's bytes: the digest is
		// only known once they are downloaded and verified, so planning
		// must not resolve it (that would download in plan).
		a.Op, a.Parallel = plan.OpCreate, true
		a.Detail = art.URL + " (signature " + req.Signature.URL + ")"
		return r.withRun(env, art, a, req), nil
	}
	want, trust := req.Pinned, req.PinTrust
	if want == nil {
		res, err := r.fetcher.Resolve(ctx, req)
		if err != nil {
			return nil, err
		}
		want, trust = &res.Digest, res.Trust
		if res.KeyExpired {
			env.Warnf("%s: signed by %s, whose key has expired (allowed by allowExpired)", art.Name, res.SignedBy)
		}
	}
	if path, ok := r.fetcher.Lookup(*want); ok {
		sha, err := sha256Of(*want, path)
		if err != nil {
			return nil, err
		}
		r.setFetched(art.Name, fetched{Path: path, SHA256: sha, Digest: want.String(), Trust: trust})
		a.Op, a.Detail = plan.OpNone, "cached "+want.String()
		return a, nil
	}
	a.Op, a.Parallel = plan.OpCreate, true
	a.Detail = fmt.Sprintf("%s (%s, %s)", art.URL, want, trust)
	// Verify against the digest resolved now, so a checksum file that
	// changes between plan and download cannot slip a different artifact
	// in; the pin keeps the trust it was resolved with.
	req.Pinned, req.PinTrust, req.Checksum = want, trust, nil
	return r.withRun(env, art, a, req), nil
}

// withRun makes a download action: fetch, verify, record the cache file for
// the install stage, and describe what was verified how.
func (r *run) withRun(env *plan.Env, art spec.Artifact, a *plan.Action, req fetch.Request) *plan.Action {
	var got fetch.Result
	// An archive is checked and indexed while it downloads (the last
	// attempt's pass counts); a cached one is read once after. One that is
	// installed as soon as it is verified is also extracted in that pass,
	// into a staging next to its targets, and committed after
	// verification: decompressed once, and most of the install done by
	// the time the last byte arrives.
	stageNow := r.o.Pipeline && r.own[art.Name] && art.Install.Archive()
	var (
		runCtx   = context.Background()
		streamed []archive.Member
		staged   *archive.Staged
	)
	discard := func() {
		if staged != nil {
			staged.Discard()
			staged = nil
		}
	}
	if art.Install.Archive() {
		sel := archive.SelectionOf(art.Install)
		req.Inspect = func(rd io.Reader) error {
			if !stageNow {
				members, err := archive.Plan(rd, sel, archive.DefaultLimits())
				streamed = members
				return err
			}
			discard() // an earlier attempt's
			st, err := archive.Stage(runCtx, env.Root, rd, sel, archive.DefaultLimits())
			if err != nil {
				return err
			}
			staged, streamed = st, st.Members
			return nil
		}
	}
	a.Run = func(ctx context.Context) error {
		runCtx = ctx
		// Whatever is staged and not committed when the action ends
		// (a failed download, a digest that does not match, an install
		// with nothing to change) is removed.
		defer discard()
		results, err := r.fetcher.Fetch(ctx, []fetch.Request{req})
		if err != nil {
			return err
		}
		got = results[0]
		if got.KeyExpired {
			env.Warnf("%s: signed by %s, whose key has expired (allowed by allowExpired)", art.Name, got.SignedBy)
		}
		f := fetched{Path: got.Path, SHA256: got.SHA256, Digest: got.Digest.String(), Trust: got.Trust}
		if art.Install.Archive() {
			// The archive was checked and indexed while its bytes arrived
			// (or, when it came from the cache, is now): a hostile archive
			// fails before anything of it is installed.
			members, err := streamed, got.InspectErr
			if !got.Inspected {
				if stageNow {
					staged, err = stageCached(ctx, env.Root, got.Path, art.Install)
					if err == nil {
						members = staged.Members
					}
				} else {
					members, err = listArchive(got.Path, art.Install)
				}
			}
			if err != nil {
				return fmt.Errorf("%s: %w", art.URL, err)
			}
			f.Members, f.staged = members, staged
		}
		r.setFetched(art.Name, f)
		if r.o.Pipeline && r.own[art.Name] {
			return r.installNow(ctx, env, art)
		}
		return nil
	}
	a.Result = func() string {
		how := got.Trust
		if got.SignedBy != "" {
			how += " by " + got.SignedBy
		}
		if got.FromCache {
			return fmt.Sprintf("%s (cached, %s, %s)", art.URL, got.Digest, how)
		}
		return fmt.Sprintf("%s (%d bytes, %s, %s)", art.URL, got.Bytes, got.Digest, how)
	}
	return a
}

// stageCached extracts a verified cache file into a staging, in one pass.
func stageCached(ctx context.Context, root *host.Root, path string, in spec.Install) (*archive.Staged, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return archive.Stage(ctx, root, f, archive.SelectionOf(in), archive.DefaultLimits())
}

// listArchive lists and hashes the members of a verified cache file that
// an install rule selects.
func listArchive(path string, in spec.Install) ([]archive.Member, error) {
	r, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return archive.Plan(r, archive.SelectionOf(in), archive.DefaultLimits())
}

// sha256Of returns the sha256 of a cached file: the cache is keyed by it,
// so it is the file's name.
func sha256Of(d fetch.Digest, path string) (string, error) {
	if d.Algorithm == "sha256" {
		return d.Hex, nil
	}
	i := strings.LastIndexByte(path, '/')
	if i < 0 || len(path)-i-1 != 64 {
		return "", fmt.Errorf("unexpected cache path %s", path)
	}
	return path[i+1:], nil
}

// Request turns an expanded artifact into a fetch request: pinned by the
// spec or the lock file when possible, otherwise verified through its
// checksum file and signatures. With nil keyrings the signature sources
// carry no keys: enough for the trust policy (fetch.Fetcher.Admit), not
// to verify.
func Request(art spec.Artifact, keyrings map[string]*fetch.Keyring, pins *spec.Lock) (fetch.Request, error) {
	req := fetch.Request{URL: art.URL, MaxSize: art.MaxSize}
	if pin, trust := PinnedDigest(art, pins); pin != "" {
		d, err := fetch.ParseDigest(pin)
		if err != nil {
			return req, err
		}
		req.Pinned, req.PinTrust = &d, trust
	}
	sig := func(ref *spec.SignatureRef) (*fetch.SignatureSource, error) {
		if ref == nil {
			return nil, nil
		}
		kr, ok := keyrings[ref.Keyring]
		if !ok && keyrings != nil {
			return nil, fmt.Errorf("keyring %q is not loaded", ref.Keyring)
		}
		return &fetch.SignatureSource{URL: ref.URL, Keyring: kr}, nil
	}
	if c := art.Checksum; c != nil {
		s, err := sig(c.Signature)
		if err != nil {
			return req, err
		}
		req.Checksum = &fetch.ChecksumSource{URL: c.URL, Algorithm: c.Algorithm, Name: c.Name, Signature: s}
	}
	s, err := sig(art.Signature)
	if err != nil {
		return req, err
	}
	req.Signature = s
	return req, nil
}

// LoadKeyrings reads the spec's keyrings: inline armored keys, or a file
// inside the target root.
func LoadKeyrings(root *host.Root, specs map[string]spec.Keyring) (map[string]*fetch.Keyring, error) {
	out := map[string]*fetch.Keyring{}
	for name, k := range specs {
		data := []byte(k.Armored)
		if k.Path != "" {
			b, exists, err := root.ReadFile(k.Path)
			if err != nil {
				return nil, fmt.Errorf("keyring %s: %w", name, err)
			}
			if !exists {
				return nil, fmt.Errorf("keyring %s: %s does not exist in the target root", name, k.Path)
			}
			data = b
		}
		kr, err := fetch.LoadKeyring(data)
		if err != nil {
			return nil, fmt.Errorf("keyring %s: %w", name, err)
		}
		kr.AllowExpired = k.AllowExpired
		out[name] = kr
	}
	return out, nil
}

// Lock resolves the digest of every artifact for each architecture,
// verifying signatures where upstream publishes them, and returns the lock
// (existing pins are kept and checked, not trusted blindly: a pin is
// re-resolved and must match).
func Lock(ctx context.Context, n *spec.Node, keyrings map[string]*fetch.Keyring, arches []string, f *fetch.Fetcher) (*spec.Lock, error) {
	lock := spec.NewLock()
	var reqs []fetch.Request
	var arts []spec.Artifact
	for _, arch := range arches {
		expanded, err := spec.Expand(n, arch)
		if err != nil {
			return nil, err
		}
		for _, art := range expanded {
			if _, seen := lock.Pins[art.Upstream]; seen {
				continue
			}
			req, err := Request(art, keyrings, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", art.SpecPath, err)
			}
			lock.Pins[art.Upstream] = ""
			reqs, arts = append(reqs, req), append(arts, art)
		}
	}
	res, err := f.ResolveAll(ctx, reqs)
	if err != nil {
		return nil, err
	}
	for i, r := range res {
		lock.Pins[arts[i].Upstream] = r.Digest.String()
		lock.Trust[arts[i].Upstream] = r.Trust
	}
	return lock, nil
}

// FillCache downloads every artifact for each architecture into the
// fetcher's cache (`nodeprov fetch --to DIR`) and returns the lock of what
// it verified, which an air-gapped apply uses to need no network at all.
func FillCache(ctx context.Context, n *spec.Node, keyrings map[string]*fetch.Keyring, arches []string, pins *spec.Lock, f *fetch.Fetcher) (*spec.Lock, []fetch.Result, error) {
	lock := spec.NewLock()
	var reqs []fetch.Request
	var arts []spec.Artifact
	seen := map[string]bool{}
	for _, arch := range arches {
		expanded, err := spec.Expand(n, arch)
		if err != nil {
			return nil, nil, err
		}
		for _, art := range expanded {
			if seen[art.Upstream] {
				continue
			}
			seen[art.Upstream] = true
			req, err := Request(art, keyrings, pins)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", art.SpecPath, err)
			}
			reqs, arts = append(reqs, req), append(arts, art)
		}
	}
	results, err := f.Fetch(ctx, reqs)
	if err != nil {
		return nil, results, err
	}
	for i, r := range results {
		lock.Pins[arts[i].Upstream] = r.Digest.String()
		lock.Trust[arts[i].Upstream] = r.Trust
	}
	return lock, results, nil
}

// RootCAs returns the certificate pool downloads verify servers with: the
// system's plus the spec's tls.ca and tls.caFile (read inside root); nil,
// meaning the system pool, when the spec adds none.
func RootCAs(root *host.Root, t spec.TLS) (*x509.CertPool, error) {
	if t.CA == "" && t.CAFile == "" {
		return nil, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	add := func(what string, data []byte) error {
		certs, err := spec.ParseCAs(data)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		for _, c := range certs {
			pool.AddCert(c)
		}
		return nil
	}
	if t.CA != "" {
		if err := add("tls.ca", []byte(t.CA)); err != nil {
			return nil, err
		}
	}
	if t.CAFile != "" {
		data, exists, err := root.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.caFile: %w", err)
		}
		if !exists {
			return nil, fmt.Errorf("tls.caFile: %s does not exist in the target root", t.CAFile)
		}
		if err := add("tls.caFile "+t.CAFile, data); err != nil {
			return nil, err
		}
	}
	return pool, nil
}
