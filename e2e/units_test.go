package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// The units stage against a real systemd: a Debian root booted in
// systemd-nspawn (nspawn_node_test.go), the nodeprov under test inside it,
// and containerd, runc and the CNI plugins downloaded from the loopback
// artifact mirror, which the test serves inside the node's network
// namespace.

// nodeSpecOptions vary the spec the node tests apply.
type nodeSpecOptions struct {
	sandboxImage string // containerd.sandboxImage
	units        string // extra entries of units:, YAML lines indented by two
	machineID    string // machineID: block body, e.g. "policy: regenerate"
}

// nodeSpec is a worker spec: containerd, runc and CNI from the mirror at
// serverURL; containerd.service enabled and started; and np-sleeper.service,
// a bystander that is started and must never be restarted by changes that
// are not its own.
func nodeSpec(a *artifacts, serverURL string, o nodeSpecOptions) string {
	if o.sandboxImage == "" {
		o.sandboxImage = "registry.k8s.io/pause:3.9"
	}
	s := fmt.Sprintf(`apiVersion: nodeprov/v1alpha1
kind: Node
metadata: {name: nspawn-node}
%s
containerd:
  sandboxImage: %s
units:
  - name: containerd.service
    enabled: true
    state: started
  - name: np-sleeper.service
    enabled: true
    state: started
    contents: |
      [Unit]
      Description=a bystander that must not be restarted
      [Service]
      ExecStart=/bin/sleep infinity
      [Install]
      WantedBy=multi-user.target
%s`, strings.TrimSuffix(releaseComponents(a, serverURL, false), "\n"), o.sandboxImage, o.units)
	if o.machineID != "" {
		s += "machineID:\n" + indent(o.machineID, "  ")
	}
	return s
}

// serveIn serves the artifact tree at addr inside a network namespace and
// returns the base URL; wrap, if not nil, wraps the file server as in
// a.serve. Given the address of a.serve's server, one spec works both for
// an offline apply on the host and inside the node.
func (a *artifacts) serveIn(t *testing.T, ns *netns, addr string, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = http.FileServer(http.Dir(a.dir))
	if wrap != nil {
		h = wrap(h)
	}
	return ns.serve(t, addr, h)
}

// applyIn writes the spec to /etc/nodeprov/node.yaml in the node and runs
// nodeprov apply -o json on it there, with extra flags.
func applyIn(t *testing.T, n *node, specText string, flags ...string) (result, report) {
	t.Helper()
	n.writeFile(t, "/etc/nodeprov/node.yaml", []byte(specText), 0o600)
	start := time.Now()
	args := append([]string{"nodeprov", "apply", "-o", "json"}, flags...)
	r := n.run(t, "", append(args, "/etc/nodeprov/node.yaml")...)
	t.Logf("apply in node %s: exit %d in %s", n.name, r.code, time.Since(start).Round(10*time.Millisecond))
	return r, parseReport(t, r.stdout)
}

// unitRun identifies one run of a service: a restart changes all three.
type unitRun struct {
	MainPID, ActiveEnterTimestamp, InvocationID string
}

func (n *node) unitRun(t *testing.T, unit string) unitRun {
	t.Helper()
	p := n.unitProps(t, unit, "MainPID", "ActiveEnterTimestamp", "InvocationID", "ActiveState")
	if p["ActiveState"] != "active" || p["MainPID"] == "0" {
		t.Fatalf("%s is not running: %v\n%s", unit, p, n.journal(t, unit, 20))
	}
	return unitRun{p["MainPID"], p["ActiveEnterTimestamp"], p["InvocationID"]}
}

// starts counts the times systemd started a unit in this boot.
func (n *node) starts(t *testing.T, unit string) int {
	t.Helper()
	r := n.run(t, "", "journalctl", "-b", "-u", unit, "-o", "cat", "--no-pager")
	return strings.Count(r.stdout, "Started "+unit)
}

// changedActions lists the report's changed actions as "resource (op)".
func changedActions(r report) []string {
	var out []string
	for _, s := range r.Stages {
		for _, a := range s.Actions {
			if a.Status == "changed" {
				out = append(out, a.Resource+" ("+a.Op+")")
			}
		}
	}
	return out
}

// checkContainerdServes checks containerd runs under systemd, enabled, and
// answers ctr with the installed release.
func checkContainerdServes(t *testing.T, n *node) {
	t.Helper()
	if got := strings.TrimSpace(n.sh(t, "systemctl is-active containerd.service").stdout); got != "active" {
		t.Errorf("systemctl is-active containerd: %q\n%s", got, n.journal(t, "containerd.service", 20))
	}
	if got := strings.TrimSpace(n.sh(t, "systemctl is-enabled containerd.service").stdout); got != "enabled" {
		t.Errorf("systemctl is-enabled containerd: %q", got)
	}
	r := n.sh(t, "ctr version")
	if r.code != 0 || !regexp.MustCompile(`(?s)Server:.*Version:\s+`+regexp.QuoteMeta(containerdVersion)).MatchString(r.stdout) {
		t.Errorf("ctr version does not reach containerd %s:\n%s", containerdVersion, r)
	}
}

// TestUnitsLive applies a worker spec inside a booted node: containerd is
// installed, enabled and started through systemd; a second apply restarts
// nothing; a changed containerd config restarts containerd once and
// nothing else; a unit that fails to start fails the run with its journal.
func TestUnitsLive(t *testing.T) {
	a := releaseArtifacts(t)
	root := newNodeRoot(t)
	ns := newNetns(t)
	url := a.serveIn(t, ns, "127.0.0.1:0", nil)
	n := bootNode(t, root, bootOptions{ns: ns})
	spec := nodeSpec(a, url, nodeSpecOptions{})

	r, rep := applyIn(t, n, spec)
	if r.code != 0 || !rep.OK {
		t.Fatalf("first apply:\n%s", r)
	}
	st := rep.statuses()
	for _, res := range []string{"unit containerd.service", "enable containerd.service", "daemon-reload", "start containerd.service", "start np-sleeper.service"} {
		if st[res] != "changed" {
			t.Errorf("first apply: %s is %q, want changed", res, st[res])
		}
	}
	checkContainerdServes(t, n)
	ctrd, sleeper := n.unitRun(t, "containerd.service"), n.unitRun(t, "np-sleeper.service")
	t.Logf("containerd.service: MainPID %s since %s", ctrd.MainPID, ctrd.ActiveEnterTimestamp)
	if t.Failed() {
		t.FailNow()
	}

	t.Run("second apply changes nothing", func(t *testing.T) {
		r, rep := applyIn(t, n, spec)
		if r.code != 0 || rep.Changed != 0 {
			t.Fatalf("second apply changed %v:\n%s", changedActions(rep), r)
		}
		if got := n.unitRun(t, "containerd.service"); got != ctrd {
			t.Errorf("containerd restarted by a no-op apply: %+v, was %+v", got, ctrd)
		}
		if got := n.unitRun(t, "np-sleeper.service"); got != sleeper {
			t.Errorf("np-sleeper restarted by a no-op apply: %+v, was %+v", got, sleeper)
		}
	})

	t.Run("changed config restarts containerd once", func(t *testing.T) {
		before := n.starts(t, "containerd.service")
		changed := nodeSpec(a, url, nodeSpecOptions{sandboxImage: "registry.k8s.io/pause:3.10"})
		r, rep := applyIn(t, n, changed)
		if r.code != 0 || !rep.OK {
			t.Fatalf("apply with a new sandbox image:\n%s", r)
		}
		// One config change and one restart: no unit file, no reload, no
		// other unit touched.
		var jobs, configs, others []string
		for _, c := range changedActions(rep) {
			switch {
			case strings.HasPrefix(c, "restart ") || strings.HasPrefix(c, "start ") || strings.HasPrefix(c, "stop "):
				jobs = append(jobs, c)
			case strings.Contains(c, "/etc/containerd/config.toml"):
				configs = append(configs, c)
			default:
				others = append(others, c)
			}
		}
		if strings.Join(jobs, ",") != "restart containerd.service (update)" || len(configs) != 1 || len(others) != 0 {
			t.Errorf("changed actions: jobs %q, config %q, others %q; want one restart of containerd.service and the config", jobs, configs, others)
		}
		now := n.unitRun(t, "containerd.service")
		if now.MainPID == ctrd.MainPID || now.InvocationID == ctrd.InvocationID {
			t.Errorf("containerd was not restarted: %+v, was %+v", now, ctrd)
		}
		t.Logf("containerd.service restarted: MainPID %s -> %s", ctrd.MainPID, now.MainPID)
		if d := n.starts(t, "containerd.service") - before; d != 1 {
			t.Errorf("containerd started %d times by the apply, want exactly 1", d)
		}
		if got := n.unitRun(t, "np-sleeper.service"); got != sleeper {
			t.Errorf("np-sleeper restarted for containerd's config: %+v, was %+v", got, sleeper)
		}
		if cfg := n.mustSh(t, "cat /etc/containerd/config.toml"); !strings.Contains(cfg, "registry.k8s.io/pause:3.10") {
			t.Errorf("config.toml does not have the new sandbox image:\n%s", cfg)
		}
		checkContainerdServes(t, n)
		ctrd = now

		r, rep = applyIn(t, n, changed)
		if r.code != 0 || rep.Changed != 0 {
			t.Errorf("apply after the restart changed %v:\n%s", changedActions(rep), r)
		}
		if got := n.unitRun(t, "containerd.service"); got != ctrd {
			t.Errorf("containerd restarted again: %+v, was %+v", got, ctrd)
		}
	})

	t.Run("failing unit fails apply with its journal", func(t *testing.T) {
		const marker = "np-broken: cannot open /etc/np-broken.conf"
		broken := nodeSpec(a, url, nodeSpecOptions{sandboxImage: "registry.k8s.io/pause:3.10", units: `  - name: np-broken.service
    state: started
    contents: |
      [Unit]
      Description=a service whose ExecStart fails
      [Service]
      Type=oneshot
      ExecStart=/bin/sh -c 'echo "` + marker + `" >&2; exit 3'
`})
		r, rep := applyIn(t, n, broken)
		if r.code != 1 || rep.OK || rep.Error == nil {
			t.Fatalf("apply with a failing unit: want exit 1 and an error:\n%s", r)
		}
		if !strings.Contains(rep.Error.Message, "np-broken.service") || !strings.Contains(rep.Error.Message, marker) {
			t.Errorf("the error does not name the unit and quote its journal (%q):\n%s", marker, rep.Error.Message)
		}
		t.Logf("the error, as reported:\n%s", rep.Error.Message)
		if rep.Error.Stage != "units" {
			t.Errorf("error in stage %q, want units", rep.Error.Stage)
		}
		text := n.run(t, "", "nodeprov", "apply", "/etc/nodeprov/node.yaml")
		if text.code != 1 || !strings.Contains(text.stdout+text.stderr, marker) {
			t.Errorf("text output of the failing apply lacks the journal line %q:\n%s", marker, text)
		}
		if got := n.unitRun(t, "containerd.service"); got != ctrd {
			t.Errorf("containerd restarted by a run that failed on another unit: %+v, was %+v", got, ctrd)
		}
	})
}

// unitLinks returns the symlinks under root's /etc/systemd/system that point
// at one of units (by base name), as "link -> target".
func unitLinks(t *testing.T, root string, units []string) []string {
	t.Helper()
	dir := filepath.Join(root, "etc/systemd/system")
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.Type()&os.ModeSymlink == 0 {
			return err
		}
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		for _, u := range units {
			if filepath.Base(target) == u || filepath.Base(p) == u {
				rel, _ := filepath.Rel(dir, p)
				out = append(out, rel+" -> "+target)
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// TestUnitsOffline applies the worker spec to an unbooted root: the enable
// links are the ones `systemctl --root enable` makes for the same unit
// files, start is deferred; booting the root then runs containerd and the
// bystander, and a live apply finds nothing left to do.
func TestUnitsOffline(t *testing.T) {
	a := releaseArtifacts(t)
	srv := a.serve(t, nil)
	root := newNodeRoot(t)
	spec := nodeSpec(a, srv.URL, nodeSpecOptions{})
	units := []string{"containerd.service", "np-sleeper.service"}

	before := unitLinks(t, root, units)
	start := time.Now()
	r := runNodeprov(t, "", "apply", "--root", root, "-o", "json", writeSpec(t, spec))
	rep := parseReport(t, r.stdout)
	if r.code != 0 || !rep.OK {
		t.Fatalf("offline apply:\n%s", r)
	}
	t.Logf("offline apply in %s", time.Since(start).Round(10*time.Millisecond))
	st := rep.statuses()
	for res, want := range map[string]string{
		"enable containerd.service": "changed", "enable np-sleeper.service": "changed",
		"start containerd.service": "deferred", "start np-sleeper.service": "deferred",
	} {
		if st[res] != want {
			t.Errorf("offline apply: %s is %q, want %s", res, st[res], want)
		}
	}
	if _, ok := st["daemon-reload"]; ok {
		t.Errorf("offline apply planned a daemon-reload")
	}
	got := unitLinks(t, root, units)
	if len(before) != 0 || len(got) == 0 {
		t.Fatalf("links before %q, after %q", before, got)
	}

	// systemctl --root on the same unit files, in a root of their own.
	if _, err := exec.LookPath("systemctl"); err != nil {
		t.Fatalf("systemctl is missing (make test installs systemd): %v", err)
	}
	ref := t.TempDir()
	for _, u := range units {
		b, err := os.ReadFile(filepath.Join(root, "etc/systemd/system", u))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(ref, "etc/systemd/system", u)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("systemctl", append([]string{"--root=" + ref, "enable"}, units...)...).CombinedOutput(); err != nil {
		t.Fatalf("systemctl --root enable: %v\n%s", err, out)
	}
	if want := unitLinks(t, ref, units); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("nodeprov's links differ from systemctl --root enable:\nnodeprov:\n  %s\nsystemctl:\n  %s",
			strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if r := runNodeprov(t, "", "apply", "--root", root, "-o", "json", writeSpec(t, spec)); parseReport(t, r.stdout).Changed != 0 {
		t.Errorf("second offline apply changed something:\n%s", r)
	}

	ns := newNetns(t)
	a.serveIn(t, ns, strings.TrimPrefix(srv.URL, "http://"), nil)
	n := bootNode(t, root, bootOptions{ns: ns})
	checkContainerdServes(t, n)
	if got := strings.TrimSpace(n.sh(t, "systemctl is-active np-sleeper.service; systemctl is-enabled np-sleeper.service").stdout); got != "active\nenabled" {
		t.Errorf("np-sleeper after boot: %q", got)
	}
	ctrd := n.unitRun(t, "containerd.service")
	r, rep = applyIn(t, n, spec)
	if r.code != 0 || rep.Changed != 0 {
		t.Errorf("live apply on the booted image changed %v:\n%s", changedActions(rep), r)
	}
	if got := n.unitRun(t, "containerd.service"); got != ctrd {
		t.Errorf("containerd restarted by the live apply: %+v, was %+v", got, ctrd)
	}
}
