package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The trust promises of the README's security model, each run through the
// real binary on every command it concerns: plan, check, apply, fetch,
// lock and first boot. Every byte stays on loopback; the runs that could
// follow a redirect have HTTP(S)_PROXY at a loopback proxy that records
// anything aimed elsewhere.

// trustServer serves a tool, its unsigned sha256 file, and paths that
// redirect to a public address; it counts the requests per path.
type trustServer struct {
	*httptest.Server
	tool []byte
	mu   sync.Mutex
	hits map[string]int
}

func newTrustServer(t *testing.T) *trustServer {
	t.Helper()
	s := &trustServer{tool: []byte("#!/bin/sh\necho trusted tool\n"), hits: map[string]int{}}
	sum := sha256.Sum256(s.tool)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		s.mu.Unlock()
		switch r.URL.Path {
		case "/tool":
			w.Write(s.tool)
		case "/tool.sha256":
			fmt.Fprintf(w, "%s  tool\n", hex.EncodeToString(sum[:]))
		case "/away/tool", "/away/tool.sha256":
			http.Redirect(w, r, "http://192.0.2.1"+strings.TrimPrefix(r.URL.Path, "/away"), http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *trustServer) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.hits {
		n += c
	}
	return n
}

func (s *trustServer) sha256() string {
	sum := sha256.Sum256(s.tool)
	return hex.EncodeToString(sum[:])
}

// toolSpec downloads the tool from dir ("" or "/away") with its digest
// from the unsigned checksum file next to it (trust same-origin), or
// pinned when pin is set.
func (s *trustServer) toolSpec(dir, pin string) string {
	verify := fmt.Sprintf("checksum: {url: %s%s/tool.sha256}", s.URL, dir)
	if pin != "" {
		verify = "sha256: " + pin
	}
	return fmt.Sprintf(`apiVersion: nodeprov/v1alpha1
kind: Node
downloads:
  - url: %s%s/tool
    %s
    path: /usr/local/bin/tool
    mode: "0755"
`, s.URL, dir, verify)
}

// cacheEntries counts the verified artifacts in a cache directory.
func cacheEntries(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	for _, d := range []string{"sha256", "sha512"} {
		es, _ := os.ReadDir(filepath.Join(dir, d))
		n += len(es)
	}
	return n
}

// TestRequirePinnedOnEveryCommand: a digest that comes only from the
// artifact's own origin is refused under --require-pinned by every
// command, before any request is made, and nothing is installed, cached or
// locked; so is a lock entry recorded from such a digest, and an artifact
// an earlier run installed. A pin in the spec, or a lock line written by
// hand, passes.
func TestRequirePinnedOnEveryCommand(t *testing.T) {
	requireRoot(t)
	srv := newTrustServer(t)
	const refused = "pinned digests are required"

	type row struct {
		name string
		run  func(t *testing.T) (result, string) // the run, and the root it targeted ("" for none)
		code int
		// wantRequests is how many requests the refused run may make: 0,
		// the policy decides from the spec and lock alone.
		wantRequests int
	}
	sameOrigin := func(t *testing.T) string { return writeSpec(t, srv.toolSpec("", "")) }
	rows := []row{
		{"plan", func(t *testing.T) (result, string) {
			root := sandbox(t)
			return runNodeprov(t, "", "plan", "--require-pinned", "--root", root, sameOrigin(t)), root
		}, 1, 0},
		{"check", func(t *testing.T) (result, string) {
			root := sandbox(t)
			return runNodeprov(t, "", "check", "--require-pinned", "--root", root, sameOrigin(t)), root
		}, 1, 0},
		{"apply", func(t *testing.T) (result, string) {
			root := sandbox(t)
			return runNodeprov(t, "", "apply", "--require-pinned", "--root", root, sameOrigin(t)), root
		}, 1, 0},
		{"apply -o json", func(t *testing.T) (result, string) {
			root := sandbox(t)
			r := runNodeprov(t, "", "apply", "--require-pinned", "-o", "json", "--root", root, sameOrigin(t))
			if rep := parseReport(t, r.stdout); rep.OK || rep.Error == nil || !strings.Contains(rep.Error.Message, refused) {
				t.Errorf("JSON report does not say why: %+v", rep.Error)
			}
			return r, root
		}, 1, 0},
		{"fetch --to", func(t *testing.T) (result, string) {
			cache := t.TempDir()
			r := runNodeprov(t, "", "fetch", "--require-pinned", "--to", cache, sameOrigin(t))
			if n := cacheEntries(t, cache); n != 0 {
				t.Errorf("fetch --to cached %d artifacts", n)
			}
			if _, err := os.Stat(filepath.Join(cache, "nodeprov.lock")); err == nil {
				t.Error("fetch --to wrote a lock file")
			}
			return r, ""
		}, 1, 0},
		{"lock", func(t *testing.T) (result, string) {
			spec := sameOrigin(t)
			r := runNodeprov(t, "", "lock", "--require-pinned", "--arch", "amd64", spec)
			if _, err := os.Stat(filepath.Join(filepath.Dir(spec), "nodeprov.lock")); err == nil {
				t.Error("lock --require-pinned wrote a lock file")
			}
			return r, ""
		}, 1, 0},
		{"apply with a lock entry recorded same-origin", func(t *testing.T) (result, string) {
			spec := sameOrigin(t)
			if r := runNodeprov(t, "", "lock", "--arch", "amd64", spec); r.code != 0 {
				t.Fatalf("lock:\n%s", r)
			}
			lock, _ := os.ReadFile(filepath.Join(filepath.Dir(spec), "nodeprov.lock"))
			if !strings.Contains(string(lock), " same-origin\n") {
				t.Fatalf("the lock does not record same-origin trust:\n%s", lock)
			}
			before := srv.requests()
			root := sandbox(t)
			r := runNodeprov(t, "", "apply", "--require-pinned", "--root", root, spec)
			if n := srv.requests() - before; n != 0 {
				t.Errorf("%d requests after the lock was made", n)
			}
			return r, root
		}, 1, -1},
		{"apply over an install made without the flag", func(t *testing.T) (result, string) {
			spec, root := sameOrigin(t), sandbox(t)
			if r := runNodeprov(t, "", "apply", "--root", root, spec); r.code != 0 {
				t.Fatalf("apply without --require-pinned:\n%s", r)
			}
			r := runNodeprov(t, "", "apply", "--require-pinned", "--root", root, spec)
			// The earlier install stays (nodeprov removes nothing it did
			// not plan), but this run accepts nothing.
			if !strings.Contains(r.output(), "digest comes only from the unsigned checksum file") {
				t.Errorf("the refusal does not say why:\n%s", r)
			}
			return r, ""
		}, 1, -1},
		{"first boot of an image built with --require-pinned", func(t *testing.T) (result, string) {
			spec, root := sameOrigin(t), sandbox(t)
			if r := runNodeprov(t, "", "lock", "--arch", "amd64", spec); r.code != 0 {
				t.Fatalf("lock:\n%s", r)
			}
			// The image build itself refuses the artifact ...
			if r := runNodeprov(t, "", "apply", "--image", "--require-pinned", "--root", root, spec); r.code != 1 || !strings.Contains(r.output(), refused) {
				t.Fatalf("image build with a same-origin pin: want exit 1 naming the policy\n%s", r)
			}
			// ... and a build of the units alone installs the first-boot
			// unit, which carries the policy to the booted host along with
			// the lock and its trust column.
			if r := runNodeprov(t, "", "apply", "--image", "--require-pinned", "--stages", "units", "--root", root, spec); r.code != 0 {
				t.Fatalf("image build of the units:\n%s", r)
			}
			unit, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/nodeprov-firstboot.service"))
			if err != nil {
				t.Fatal(err)
			}
			var exec []string
			for _, l := range strings.Split(string(unit), "\n") {
				if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
					exec = strings.Fields(v)
				}
			}
			if len(exec) < 3 || exec[1] != "apply" || !strings.Contains(strings.Join(exec, " "), "--require-pinned") {
				t.Fatalf("first-boot ExecStart = %q, want apply with --require-pinned", exec)
			}
			if lock, _ := os.ReadFile(filepath.Join(root, "etc/nodeprov/nodeprov.lock")); !strings.Contains(string(lock), " same-origin\n") {
				t.Fatalf("the image's lock lost its trust column:\n%s", lock)
			}
			// The first-boot command as the unit runs it (the installed
			// binary, the unit's own flags, the installed spec and lock),
			// pointed at the image root instead of /.
			args := append([]string{"apply"}, exec[2:len(exec)-1]...)
			args = append(args, "--root", root, "--live", "no", filepath.Join(root, exec[len(exec)-1]))
			return runCmd(t, "", filepath.Join(root, exec[0]), args...), root
		}, 1, -1},
	}
	for _, rw := range rows {
		t.Run(rw.name, func(t *testing.T) {
			before := srv.requests()
			r, root := rw.run(t)
			wantRefused(t, r, rw.code, refused)
			if rw.wantRequests >= 0 && srv.requests()-before != rw.wantRequests {
				t.Errorf("%d requests, want %d: the policy must decide before downloading", srv.requests()-before, rw.wantRequests)
			}
			if root != "" {
				if _, err := os.Lstat(filepath.Join(root, "usr/local/bin/tool")); err == nil {
					t.Error("the refused artifact was installed")
				}
				if n := cacheEntries(t, filepath.Join(root, "var/cache/nodeprov")); n != 0 {
					t.Errorf("the refused artifact was cached (%d entries)", n)
				}
			}
		})
	}

	// What the policy accepts, through the same binary.
	t.Run("accepted: pinned in the spec", func(t *testing.T) {
		root := sandbox(t)
		r := runNodeprov(t, "", "apply", "--require-pinned", "--root", root, writeSpec(t, srv.toolSpec("", srv.sha256())))
		if r.code != 0 {
			t.Fatalf("apply of a spec-pinned artifact:\n%s", r)
		}
	})
	t.Run("accepted: a lock line written by hand", func(t *testing.T) {
		spec, root := sameOrigin(t), sandbox(t)
		line := fmt.Sprintf("%s/tool sha256:%s\n", srv.URL, srv.sha256())
		if err := os.WriteFile(filepath.Join(filepath.Dir(spec), "nodeprov.lock"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
		if r := runNodeprov(t, "", "apply", "--require-pinned", "--root", root, spec); r.code != 0 {
			t.Fatalf("apply with an operator's pin:\n%s", r)
		}
		if got, _ := os.ReadFile(filepath.Join(root, "usr/local/bin/tool")); string(got) != string(srv.tool) {
			t.Errorf("installed tool %q", got)
		}
	})
}

// TestNoRedirectFromLoopbackToPublic: on every command that contacts a
// server, a redirect from the loopback origin to a public address is
// refused with both URLs named, and no request reaches the proxy trap.
func TestNoRedirectFromLoopbackToPublic(t *testing.T) {
	requireRoot(t)
	srv := newTrustServer(t)
	proxy := newGuardProxy(t)
	env := []string{"HTTP_PROXY=" + proxy.URL, "HTTPS_PROXY=" + proxy.URL, "NO_PROXY="}
	// The checksum file redirects: planning (plan, check), apply, fetch
	// and lock all read it first.
	spec := func(t *testing.T) string { return writeSpec(t, srv.toolSpec("/away", "")) }
	// The artifact itself redirects, its digest pinned: only the download
	// meets the redirect.
	pinned := func(t *testing.T) string { return writeSpec(t, srv.toolSpec("/away", srv.sha256())) }
	for _, c := range []struct {
		name string
		args func(t *testing.T) []string
		from string
	}{
		{"plan", func(t *testing.T) []string { return []string{"plan", "--root", sandbox(t), spec(t)} }, "/away/tool.sha256"},
		{"check", func(t *testing.T) []string { return []string{"check", "--root", sandbox(t), spec(t)} }, "/away/tool.sha256"},
		{"apply", func(t *testing.T) []string { return []string{"apply", "--root", sandbox(t), spec(t)} }, "/away/tool.sha256"},
		{"apply (pinned artifact redirects)", func(t *testing.T) []string { return []string{"apply", "--root", sandbox(t), pinned(t)} }, "/away/tool"},
		{"fetch --to", func(t *testing.T) []string { return []string{"fetch", "--to", t.TempDir(), pinned(t)} }, "/away/tool"},
		{"lock", func(t *testing.T) []string { return []string{"lock", "--arch", "amd64", spec(t)} }, "/away/tool.sha256"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := runNodeprovEnv(t, env, "", c.args(t)...)
			wantRefused(t, r, 1, "redirect refused", srv.URL+c.from+" -> http://192.0.2.1"+strings.TrimPrefix(c.from, "/away"), "public address 192.0.2.1")
			if seen := proxy.seen(); len(seen) != 0 {
				t.Errorf("requests left loopback (the proxy saw %q)", seen)
			}
		})
	}
}

// TestSecretsNeverShown: registry credentials (inline and from a file in
// the root), proxy credentials and a token added by a patch reach the files
// containerd reads, with private modes, and never any output: text and
// JSON reports of plan, apply and check, plan --expanded, validate's
// diagnostics with their quoted source lines, the last-run record.
func TestSecretsNeverShown(t *testing.T) {
	requireRoot(t)
	secrets := []string{"inl1ne-PASSWORD", "f1le-PASSWORD", "pr0xy-PASSWORD", "patch-T0KEN", "tok3n-IDENTITY"}
	src := `apiVersion: nodeprov/v1alpha1
kind: Node
containerd:
  configVersion: "2"
  cgroupDriver: cgroupfs
  registries:
    registry.example.com:
      auth: {username: robot, password: inl1ne-PASSWORD}
    quay.io:
      auth: {username: bot, passwordFile: /etc/nodeprov/quay-password}
    docker.io:
      mirrors:
        - host: https://mirror.internal:5000
          auth: {identityToken: tok3n-IDENTITY}
  proxy: {https: "http://alice:pr0xy-PASSWORD@proxy.internal:3128"}
  patch: |
    [plugins."io.containerd.grpc.v1.cri".registry.configs."ghcr.io".auth]
    token = "patch-T0KEN"
`
	root := sandbox(t)
	if err := os.MkdirAll(filepath.Join(root, "etc/nodeprov"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/nodeprov/quay-password"), []byte("f1le-PASSWORD\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	spec := writeSpec(t, src)
	var outputs []string
	run := func(code int, args ...string) result {
		t.Helper()
		r := runNodeprov(t, "", args...)
		if r.code != code {
			t.Fatalf("nodeprov %s: exit %d, want %d\n%s", strings.Join(args, " "), r.code, code, r)
		}
		outputs = append(outputs, "nodeprov "+strings.Join(args, " ")+"\n"+r.output())
		return r
	}
	run(0, "validate", spec)
	plan := run(0, "plan", "--root", root, spec)
	run(0, "plan", "-o", "json", "--root", root, spec)
	run(0, "plan", "--expanded", spec)
	run(3, "check", "--root", root, spec)
	run(0, "apply", "-o", "json", "--root", root, spec)
	run(0, "check", "-o", "json", "--root", root, spec)
	// A rotated password: drift, shown without either password.
	if err := os.WriteFile(filepath.Join(root, "etc/nodeprov/quay-password"), []byte("r0tated-PASSWORD\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, "r0tated-PASSWORD")
	drift := run(3, "check", "--root", root, spec)
	run(0, "apply", "--root", root, spec)
	// A broken spec quoting secrets in its diagnostics.
	broken := writeSpec(t, strings.Replace(src, "proxy.internal:3128", "proxy.internal:31x", 1)+"  bogus: {password: inl1ne-PASSWORD}\n")
	run(2, "validate", broken)
	run(2, "validate", "-o", "json", broken)
	run(2, "plan", "-o", "json", "--root", root, broken)

	for _, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("secret %q is shown:\n%s", s, shortenText(out, 3000))
			}
		}
	}
	if !strings.Contains(plan.stdout, "password = '<redacted>'") || !strings.Contains(plan.stdout, "http://<redacted>@proxy.internal:3128") {
		t.Errorf("plan does not show the redacted values in its diffs:\n%s", plan.stdout)
	}
	if !strings.Contains(drift.stdout, "only secret values changed") {
		t.Errorf("a rotated password is not reported as drift:\n%s", drift.stdout)
	}
	// The secrets did reach what containerd reads, in private files.
	for p, want := range map[string]struct {
		mode    os.FileMode
		secrets []string
	}{
		"etc/containerd/config.toml":                              {0o600, []string{"inl1ne-PASSWORD", "r0tated-PASSWORD", "tok3n-IDENTITY", "patch-T0KEN"}},
		"etc/systemd/system/containerd.service.d/http-proxy.conf": {0o640, []string{"pr0xy-PASSWORD"}},
	} {
		st, err := os.Stat(filepath.Join(root, p))
		if err != nil || st.Mode().Perm() != want.mode {
			t.Errorf("%s: %v %v, want mode %04o", p, st.Mode(), err, want.mode)
			continue
		}
		data, _ := os.ReadFile(filepath.Join(root, p))
		for _, s := range want.secrets {
			if !strings.Contains(string(data), s) {
				t.Errorf("%s does not hold %q", p, s)
			}
		}
	}
	// Every world-readable file nodeprov wrote is free of them.
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o004 == 0 || strings.HasSuffix(p, "quay-password") {
			return nil
		}
		data, _ := os.ReadFile(p)
		for _, s := range secrets {
			if strings.Contains(string(data), s) {
				t.Errorf("world-readable %s holds secret %q", p, s)
			}
		}
		return nil
	})
}

// TestKernelFilesystemPathsRefused: a file the spec would write under
// /proc, /sys or /dev fails validate with its position and a hint.
func TestKernelFilesystemPathsRefused(t *testing.T) {
	requireRoot(t)
	spec := writeSpec(t, `apiVersion: nodeprov/v1alpha1
kind: Node
files:
  - path: /proc/sys/net/ipv4/ip_forward
    contents: "1"
  - {path: /sys/kernel/mm/transparent_hugepage/enabled, contents: never}
  - {path: /dev/nodeprov-test, contents: x}
  - {path: /run/nodeprov/x, contents: x}
`)
	r := runNodeprov(t, "", "validate", spec)
	wantRefused(t, r, 2,
		spec+":4:11: files[0].path: /proc/sys/net/ipv4/ip_forward is inside /proc",
		"set kernel parameters with kernel.sysctl (net.ipv4.ip_forward: ...)",
		spec+":6:12: files[1].path: /sys/kernel/mm/transparent_hugepage/enabled is inside /sys",
		spec+":7:12: files[2].path: /dev/nodeprov-test is inside /dev",
		"3 problems")
	// /run is fine on a live host; in an image root it is a warning.
	ok := writeSpec(t, "apiVersion: nodeprov/v1alpha1\nkind: Node\nfiles:\n  - {path: /run/nodeprov/x, contents: x}\n")
	root := sandbox(t)
	r = runNodeprov(t, "", "apply", "-o", "json", "--root", root, ok)
	if r.code != 0 || !strings.Contains(r.stdout, "/run/nodeprov/x is under /run, which is emptied at boot") {
		t.Errorf("apply of a /run file into an image root: want exit 0 with a warning\n%s", r)
	}
}

// TestMergeKeys: a spec written with YAML anchors and merge keys validates
// and applies as if the keys were written out, and a mistake in a merged
// mapping is reported at the line where it is written.
func TestMergeKeys(t *testing.T) {
	requireRoot(t)
	spec := writeSpec(t, `apiVersion: nodeprov/v1alpha1
kind: Node
files:
  - &conf {path: /etc/a.conf, mode: "0640", contents: "x=1\n"}
  - <<: *conf
    path: /etc/b.conf
  - <<: [{mode: "0600"}, *conf]
    path: /etc/c.conf
`)
	root := sandbox(t)
	if r := runNodeprov(t, "", "apply", "--root", root, spec); r.code != 0 {
		t.Fatalf("apply:\n%s", r)
	}
	for p, mode := range map[string]os.FileMode{"etc/a.conf": 0o640, "etc/b.conf": 0o640, "etc/c.conf": 0o600} {
		st, err := os.Stat(filepath.Join(root, p))
		data, _ := os.ReadFile(filepath.Join(root, p))
		if err != nil || st.Mode().Perm() != mode || string(data) != "x=1\n" {
			t.Errorf("%s: %v %q %v, want mode %04o and x=1", p, st.Mode(), data, err, mode)
		}
	}
	if r := runNodeprov(t, "", "apply", "-o", "json", "--root", root, spec); r.code != 0 || parseReport(t, r.stdout).Changed != 0 {
		t.Errorf("re-apply changed something:\n%s", r)
	}
	broken := writeSpec(t, `apiVersion: nodeprov/v1alpha1
kind: Node
files:
  - &conf {path: /etc/a.conf, mode: 0640}
  - <<: *conf
    path: /etc/b.conf
`)
	wantRefused(t, runNodeprov(t, "", "validate", broken), 2,
		broken+":4:37: files[0].mode: file mode must be a quoted octal string",
		broken+":4:37: files[1].mode: file mode must be a quoted octal string")
}
