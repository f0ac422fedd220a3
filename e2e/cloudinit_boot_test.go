package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// The first entry point end to end: a blank Debian node (real systemd, real
// cloud-init, booted in systemd-nspawn) gets user data made by
// `nodeprov cloud-init` on a NoCloud seed. Its root holds no nodeprov:
// cloud-init downloads it from the test's server on the node's own
// loopback, checks its sha256 and runs `nodeprov apply --no-block`, which
// downloads containerd, runc, the CNI plugins and gVisor from the same
// server (the spec's mirrors) and starts containerd.service. One boot per
// scenario: a worker that must come up and run containers, and two broken
// specs that must make cloud-init report an error instead of hanging.
//
// Cgroups. This host is cgroup v1 "hybrid": every controller (cpu, memory,
// pids, ...) is bound to a v1 hierarchy and the unified (v2) hierarchy at
// /sys/fs/cgroup/unified has none. By default systemd-nspawn gives a
// booted container the host's layout, with the v1 controller hierarchies
// mounted read-only (only name=systemd and the unified one are writable,
// rooted at the node's own cgroup by a cgroup namespace), and runc in the
// node fails with "mkdir /sys/fs/cgroup/cpuset/default/<id>: read-only
// file system". nspawn has no option to make them writable, and they
// should not be:
//   - --bind= onto /sys/fs/cgroup/<controller> is covered: with a cgroup
//     namespace nspawn mounts the cgroup file systems in its inner child,
//     after the custom mounts;
//   - --property=Delegate=yes is a property of the scope nspawn registers
//     with the host's systemd, and this host runs none (the nodes use
//     --register=no --keep-unit);
//   - the v1 hierarchies are the host's, rooted where the test process is
//     (the host root for cpu): writable, runc would create, and leave,
//     cgroups in the host's own hierarchies.
//
// What works is the environment variable SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1
// (no flag): nspawn mounts a pure cgroup2 hierarchy at the node's
// /sys/fs/cgroup, rooted at the node's cgroup that startNode creates in the
// host's unified hierarchy and removes afterwards. The node's systemd,
// containerd (cgroupDriver auto: systemd) and runc create their cgroups in
// there, so everything they create is under a directory the test removes;
// the test also looks for its containers' cgroups in every host hierarchy
// after poweroff. runc then needs two system calls nspawn's seccomp filter
// refuses (nodeArgs).
//
// The price is that the node's cgroup2 has no controllers (a controller
// lives in one hierarchy only, and the host has all of them in v1):
//   - runc works, but no resource value can be written: ctr run's default
//     --cpu-shares 1024 becomes cpu.weight, which does not exist ("openat2
//     .../cpu.weight: no such file or directory"), so the test passes
//     --cpu-shares 0 when the node has no cpu controller;
//   - nodeprov's preflight rightly fails cgroups.controllers ("cpu not
//     available; ..."): the spec lists that probe in preflight.ignore;
//   - runsc cannot make its cgroup at all: gVisor treats cpu, cpuset, io,
//     memory and pids as mandatory ("mandatory cgroup controller ... is
//     missing" with the systemd driver; "write .../cgroup.subtree_control:
//     invalid argument" with cgroupfs, where it enables "+" and no
//     controller). The test asserts that error, then runs the same
//     container with runsc --ignore-cgroups: the sandbox then stays in the
//     shim's cgroup (containerd.service's) instead of getting its own.

// nspawnNodeEnv sets the environment startNode passes to systemd-nspawn
// for the nodes of these tests (restored when the test ends):
//   - SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1: a cgroup2 node, see above;
//   - SYSTEMD_NSPAWN_API_VFS_WRITABLE=network: /proc/sys/net writable, so
//     that nodeprov can set the spec's net.* sysctls live (without it:
//     "not writable: read-only file system").
//
// With the CAP_NET_ADMIN of nodeArgs, that is what nspawn does by itself for
// --private-network, which the nodes do not use: their network namespace
// comes from --network-namespace-path, for which nspawn keeps /proc/sys/net
// read-only and drops CAP_NET_ADMIN. The node's net.* sysctls are its own
// namespace's; the rest of /proc/sys stays read-only.
func nspawnNodeEnv(t *testing.T) {
	t.Setenv("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
	t.Setenv("SYSTEMD_NSPAWN_API_VFS_WRITABLE", "network")
}

// nodeArgs are the extra systemd-nspawn flags of these nodes:
//   - --capability=CAP_NET_ADMIN: the kernel wants it (in the network
//     namespace's user namespace) to write net.ipv4.ip_forward and its
//     like; without it: "kernel refused value "1": operation not
//     permitted";
//   - --system-call-filter="keyctl bpf": two system calls nspawn's seccomp
//     filter refuses and runc needs. runc puts every container in a
//     session keyring of its own (without keyctl: "unable to join session
//     keyring: unable to create session key: operation not permitted"),
//     and on cgroup2 its device rules are an eBPF program attached to the
//     container's cgroup (without bpf: "bpf_prog_query(BPF_CGROUP_DEVICE)
//     failed: operation not permitted"). The program is attached to the
//     container's cgroup inside the node's and goes with it.
var nodeArgs = []string{"--capability=CAP_NET_ADMIN", "--system-call-filter=keyctl bpf"}

// cloudInitSpecOptions vary the worker spec.
type cloudInitSpecOptions struct {
	// extraSysctl is appended to kernel.sysctl: YAML lines indented by four.
	extraSysctl string
}

// cloudInitWorkerSpec is a worker node: kernel modules and sysctls,
// containerd, runc, CNI and gVisor from the loopback mirror at serverURL,
// containerd with a runsc runtime (through the runc shim: Debian's gVisor
// has no containerd-shim-runsc-v1), containerd.service enabled and started.
func cloudInitWorkerSpec(a *artifacts, serverURL string, o cloudInitSpecOptions) string {
	return fmt.Sprintf(`apiVersion: nodeprov/v1alpha1
kind: Node
metadata: {name: cloud-init-worker}
kernel:
  modules: [overlay, br_netfilter]
  sysctl:
    net.ipv4.ip_forward: "1"
    net.bridge.bridge-nf-call-iptables: "1"
%s%scontainerd:
  runtimes:
    runsc: {type: io.containerd.runc.v2, binaryName: /usr/local/bin/runsc}
  cni: {network: bridge, subnet: 10.88.0.0/16}
units:
  - name: containerd.service
    enabled: true
    state: started
# The test node's cgroup2 hierarchy has no controllers (cloudinit_boot_test.go).
preflight:
  ignore: [cgroups.controllers]
`, o.extraSysctl, releaseComponents(a, serverURL, true))
}

// cloudInitBoot is one node booted with user data from `nodeprov
// cloud-init`.
type cloudInitBoot struct {
	n      *node
	root   string
	spec   string      // the spec the user data was made from
	served *requestLog // paths the node fetched from the server
	status cloudInitStatus
	phases []string // "name duration" for the summary
	last   time.Time
}

// phase records how long the phase that ends now took.
func (b *cloudInitBoot) phase(name string) {
	now := time.Now()
	b.phases = append(b.phases, fmt.Sprintf("%s %s", name, now.Sub(b.last).Round(10*time.Millisecond)))
	b.last = now
}

// logPhases prints the phase timings.
func (b *cloudInitBoot) logPhases(t *testing.T) {
	t.Logf("phases: %s", strings.Join(b.phases, "; "))
}

// cloudInitStatus is `cloud-init status --long --format json`.
type cloudInitStatus struct {
	Status         string   `json:"status"`
	Detail         string   `json:"detail"`
	Errors         []string `json:"errors"`
	BootStatusCode string   `json:"boot_status_code"`
	raw            string
}

// bootWithCloudInit prepares a node root without nodeprov, serves nodeprov
// and the artifacts in the node's network namespace, makes the user data
// with the real `nodeprov cloud-init` (extra flags in args; edit, if not
// nil, changes it as a user editing it by hand would), boots the node with
// it on a NoCloud seed and waits, bounded by timeout, until cloud-init has
// finished (done or error) and systemd has finished booting.
func bootWithCloudInit(t *testing.T, a *artifacts, o cloudInitSpecOptions, timeout time.Duration,
	args []string, edit func(t *testing.T, userData string) string) *cloudInitBoot {
	t.Helper()
	b := &cloudInitBoot{served: &requestLog{}, last: time.Now()}
	b.root = newNodeRoot(t)
	// A blank machine: cloud-init must bring nodeprov.
	if err := os.Remove(filepath.Join(b.root, "usr/local/bin/nodeprov")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(b.root, "usr/local/bin/nodeprov")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the node root still has nodeprov: %v", err)
	}
	// The busybox root file system for the node's containers, built on
	// the host from busybox-static.
	busyboxRootfs(t, filepath.Join(b.root, "var/lib/nodeprov-e2e/busybox"))
	b.phase("root")

	ns := newNetns(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/nodeprov", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, nodeprov) })
	mux.Handle("/", http.FileServer(http.Dir(a.dir)))
	url := ns.serve(t, "127.0.0.1:0", b.served.wrap(mux))

	sum, err := fileHash(nodeprov, sha256.New)
	if err != nil {
		t.Fatal(err)
	}
	b.spec = cloudInitWorkerSpec(a, url, o)
	r := runNodeprov(t, "", append(append([]string{"cloud-init", "--binary-url", url + "/nodeprov", "--binary-sha256", sum}, args...),
		writeSpec(t, b.spec))...)
	if r.code != 0 {
		t.Fatalf("nodeprov cloud-init:\n%s", r)
	}
	userData := r.stdout
	if edit != nil {
		userData = edit(t, userData)
	}
	t.Logf("user data: %s", strings.TrimSpace(r.stderr))
	seedNoCloud(t, b.root, "iid-"+randomHex(4), userData)
	b.phase("user-data")

	b.n = startNode(t, b.root, bootOptions{ns: ns, args: nodeArgs})
	b.phase("nspawn-to-systemd")
	b.status = waitCloudInit(t, b.n, timeout)
	t.Logf("cloud-init: status %s, %s after nspawn started", b.status.Status, time.Since(b.n.started).Round(10*time.Millisecond))
	b.phase("cloud-init")
	b.n.waitRunning(t, 2*time.Minute)
	b.phase("boot-finished")
	logCloudInitStages(t, b.n)
	return b
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// runWithin runs a command inside the node and gives up after timeout;
// timedOut reports that it did.
func (n *node) runWithin(t *testing.T, timeout time.Duration, args ...string) (r result, timedOut bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := n.command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// Killing nsenter leaves its child in the node holding the pipes.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	r = result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return r, true
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("node %s: run %s: %v", n.name, strings.Join(args, " "), err)
	}
	return r, false
}

// mustRunWithin is runWithin failing the test on a timeout.
func (n *node) mustRunWithin(t *testing.T, timeout time.Duration, args ...string) result {
	t.Helper()
	r, timedOut := n.runWithin(t, timeout, args...)
	if timedOut {
		t.Fatalf("node %s: %s did not finish in %s\n%s", n.name, strings.Join(args, " "), timeout, r)
	}
	return r
}

// waitCloudInit waits, at most timeout, until cloud-init is done or has
// failed, and returns its long status.
func waitCloudInit(t *testing.T, n *node, timeout time.Duration) cloudInitStatus {
	t.Helper()
	r, timedOut := n.runWithin(t, timeout, "cloud-init", "status", "--wait", "--long", "--format", "json")
	if timedOut {
		now, _ := n.runWithin(t, 30*time.Second, "cloud-init", "status", "--long")
		t.Fatalf("cloud-init did not finish within %s; now:\n%s\ncloud-init-output.log (tail):\n%s", timeout, now,
			tail(n.sh(t, "cat /var/log/cloud-init-output.log").stdout, 30))
	}
	var s cloudInitStatus
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("cloud-init status --format json: %v\n%s", err, r)
	}
	s.raw = r.stdout
	// cloud-init 22.4 exits 1 exactly for status error.
	if (s.Status == "error") != (r.code == 1) {
		t.Errorf("cloud-init status %q with exit %d", s.Status, r.code)
	}
	return s
}

// logCloudInitStages logs how long each of cloud-init's stages took, from
// its own record.
func logCloudInitStages(t *testing.T, n *node) {
	t.Helper()
	r := n.sh(t, "cat /run/cloud-init/status.json")
	var st struct {
		V1 map[string]json.RawMessage `json:"v1"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil {
		t.Errorf("no readable /run/cloud-init/status.json:\n%s", r)
		return
	}
	var parts []string
	for _, stage := range []string{"init-local", "init", "modules-config", "modules-final"} {
		var s struct{ Start, Finished *float64 }
		if json.Unmarshal(st.V1[stage], &s) != nil || s.Start == nil || s.Finished == nil {
			parts = append(parts, stage+" -")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.2fs", stage, *s.Finished-*s.Start))
	}
	t.Logf("cloud-init stages: %s", strings.Join(parts, "; "))
}

// cloudInitReport reads nodeprov's report of the first-boot apply.
func cloudInitReport(t *testing.T, n *node) (report, string) {
	t.Helper()
	data := n.mustSh(t, "cat /var/lib/nodeprov/cloud-init-report.json")
	if mode := strings.TrimSpace(n.mustSh(t, "stat -c %a /var/lib/nodeprov/cloud-init-report.json")); mode != "600" {
		t.Errorf("the report has mode %s, want 600", mode)
	}
	return parseReport(t, data), data
}

// checkStartedAt checks the report's startedAt (README, JSON report: "start
// time (UTC)") against the time the node has been up.
func checkStartedAt(t *testing.T, n *node, raw string) {
	t.Helper()
	var r struct {
		StartedAt time.Time `json:"startedAt"`
	}
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		t.Fatal(err)
	}
	if r.StartedAt.Before(n.started.Add(-time.Second)) || r.StartedAt.After(time.Now()) {
		t.Errorf("report startedAt %s, want a time between the node's start (%s) and now",
			r.StartedAt.Format(time.RFC3339Nano), n.started.UTC().Format(time.RFC3339Nano))
	}
}

// checkCloudInitError checks what a failed first boot leaves for an
// operator: cloud-init's status and result.json name the failing module,
// and cloud-init-output.log has the runcmd's message with apply's exit
// code.
func checkCloudInitError(t *testing.T, b *cloudInitBoot, applyExit int) {
	t.Helper()
	if b.status.Status != "error" {
		t.Fatalf("cloud-init status %q, want error:\n%s", b.status.Status, b.status.raw)
	}
	if !strings.Contains(strings.Join(b.status.Errors, "\n"), "scripts-user") || !strings.Contains(b.status.Detail, "scripts-user") {
		t.Errorf("cloud-init status --long does not name the scripts-user module:\n%s", b.status.raw)
	}
	t.Logf("cloud-init status --long errors: %q", b.status.Errors)
	var result struct {
		V1 struct {
			Errors []string `json:"errors"`
		} `json:"v1"`
	}
	if err := json.Unmarshal([]byte(b.n.mustSh(t, "cat /var/lib/cloud/data/result.json")), &result); err != nil {
		t.Errorf("result.json: %v", err)
	}
	if !strings.Contains(strings.Join(result.V1.Errors, "\n"), "scripts-user") {
		t.Errorf("result.json errors do not name scripts-user: %q", result.V1.Errors)
	}
	if p := b.n.unitProps(t, "cloud-final.service", "ActiveState", "Result"); p["Result"] == "success" {
		t.Errorf("cloud-final.service succeeded although scripts-user failed: %v", p)
	}
	out := b.n.mustSh(t, "cat /var/log/cloud-init-output.log")
	want := fmt.Sprintf("nodeprov cloud-init: apply failed with exit code %d; report: /var/lib/nodeprov/cloud-init-report.json", applyExit)
	if !strings.Contains(out, want) {
		t.Errorf("cloud-init-output.log lacks %q:\n%s", want, tail(out, 30))
	}
}

// checkNodeprovFetched checks that cloud-init installed nodeprov from the
// server, verified.
func checkNodeprovFetched(t *testing.T, b *cloudInitBoot) {
	t.Helper()
	if !contains(b.served.paths(), "/nodeprov") {
		t.Errorf("the node never fetched /nodeprov; requests: %v", b.served.paths())
	}
	want, err := fileHash(nodeprov, sha256.New)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fileHash(filepath.Join(b.root, "usr/local/bin/nodeprov"), sha256.New)
	if err != nil || got != want {
		t.Errorf("/usr/local/bin/nodeprov in the node: sha256 %s (%v), want %s", got, err, want)
	}
	if st, err := os.Stat(filepath.Join(b.root, "usr/local/bin/nodeprov")); err == nil && st.Mode().Perm() != 0o755 {
		t.Errorf("/usr/local/bin/nodeprov has mode %v", st.Mode().Perm())
	}
}

// hostCgroupsNamed lists the directories in every cgroup hierarchy mounted
// on the host whose name contains token.
func hostCgroupsNamed(token string) []string {
	var found []string
	filepath.WalkDir("/sys/fs/cgroup", func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && strings.Contains(d.Name(), token) {
			found = append(found, p)
		}
		return nil
	})
	sort.Strings(found)
	return found
}

// hostKeysNamed lists the kernel keys and keyrings the test can see
// (/proc/keys) whose description contains token.
func hostKeysNamed(token string) []string {
	data, _ := os.ReadFile("/proc/keys")
	var found []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, token) {
			found = append(found, line)
		}
	}
	return found
}

// tomlPath walks a decoded TOML document.
func tomlPath(doc map[string]any, keys ...string) any {
	var cur any = doc
	for _, k := range keys {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

// TestCloudInitBootWorker boots a blank node with the worker's user data:
// cloud-init downloads and verifies nodeprov, nodeprov provisions the node
// live, containerd.service runs the installed containerd under systemd, and
// ctr runs a busybox container under runc and under runsc (gVisor).
func TestCloudInitBootWorker(t *testing.T) {
	a := releaseArtifacts(t)
	nspawnNodeEnv(t)
	token := "npci" + randomHex(3)
	if got := hostCgroupsNamed(token); len(got) != 0 {
		t.Fatalf("cgroups named %s before the test: %v", token, got)
	}
	b := bootWithCloudInit(t, a, cloudInitSpecOptions{}, 6*time.Minute, nil, nil)
	n := b.n
	defer b.logPhases(t)

	if b.status.Status != "done" {
		t.Fatalf("cloud-init status %q, want done:\n%s\ncloud-init-output.log (tail):\n%s\nnodeprov's report:\n%s", b.status.Status, b.status.raw,
			tail(n.sh(t, "cat /var/log/cloud-init-output.log").stdout, 40), n.sh(t, "cat /var/lib/nodeprov/cloud-init-report.json").stdout)
	}
	if p := n.unitProps(t, "cloud-final.service", "Result"); p["Result"] != "success" {
		t.Errorf("cloud-final.service: %v", p)
	}
	checkNodeprovFetched(t, b)
	rep, raw := cloudInitReport(t, n)
	if !rep.OK || !rep.Live || rep.Command != "apply" || rep.Error != nil {
		t.Fatalf("nodeprov's report: ok=%v live=%v command=%q error=%+v\n%s", rep.OK, rep.Live, rep.Command, rep.Error, raw)
	}
	checkStartedAt(t, n, raw)
	var timing struct {
		DurationMs float64 `json:"durationMs"`
		Stages     []struct {
			Name       string  `json:"name"`
			DurationMs float64 `json:"durationMs"`
		} `json:"stages"`
	}
	json.Unmarshal([]byte(raw), &timing)
	var stages []string
	for _, s := range timing.Stages {
		stages = append(stages, fmt.Sprintf("%s %.0fms", s.Name, s.DurationMs))
	}
	t.Logf("nodeprov apply under cloud-init: %.0fms (%s); changed %d", timing.DurationMs, strings.Join(stages, ", "), rep.Changed)
	st := rep.statuses()
	for _, res := range []string{"unit containerd.service", "enable containerd.service", "start containerd.service"} {
		if st[res] != "changed" {
			t.Errorf("report: %s is %q, want changed", res, st[res])
		}
	}
	if _, detail := actionDetail(rep, "start containerd.service"); !strings.Contains(detail, "queued") {
		t.Errorf("start containerd.service under cloud-init: detail %q, want a queued job (--no-block)", detail)
	}
	for _, p := range []string{
		"/github/containerd/containerd/releases/download/v" + containerdVersion + "/containerd-" + containerdVersion + "-linux-amd64.tar.gz",
		"/github/opencontainers/runc/releases/download/v" + runcVersion + "/runc.amd64",
		"/github/containernetworking/plugins/releases/download/v" + cniVersion + "/cni-plugins-linux-amd64-v" + cniVersion + ".tgz",
		"/gcs/gvisor/releases/release/" + gvisorVersion + "/x86_64/runsc",
	} {
		if !contains(b.served.paths(), p) {
			t.Errorf("nodeprov did not fetch %s from the mirror; requests: %v", p, b.served.paths())
		}
	}
	if got := n.mustSh(t, "cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/bridge/bridge-nf-call-iptables"); got != "1\n1\n" {
		t.Errorf("live sysctls in the node: %q", got)
	}
	if r := n.sh(t, "cat /etc/sysctl.d/99-nodeprov.conf /etc/modules-load.d/nodeprov.conf"); r.code != 0 ||
		!strings.Contains(r.stdout, "\nnet.ipv4.ip_forward = 1\n") || !strings.Contains(r.stdout, "\nbr_netfilter\n") {
		t.Errorf("persisted kernel settings:\n%s", r)
	}

	// containerd.service: queued by apply, started by systemd.
	start := time.Now()
	var state string
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		state = strings.TrimSpace(n.sh(t, "systemctl is-active containerd.service").stdout)
		if state == "active" || state == "failed" || time.Now().After(deadline) {
			break
		}
	}
	if state != "active" {
		t.Fatalf("containerd.service is %q:\n%s", state, n.journal(t, "containerd.service", 30))
	}
	b.phase("containerd-active")
	t.Logf("containerd.service active %s after cloud-init finished", time.Since(start).Round(10*time.Millisecond))
	checkContainerdServes(t, n)
	p := n.unitProps(t, "containerd.service", "MainPID", "ControlGroup")
	if exe := strings.TrimSpace(n.mustSh(t, "readlink /proc/"+p["MainPID"]+"/exe")); exe != "/usr/local/bin/containerd" {
		t.Errorf("containerd.service MainPID %s runs %q, want the installed /usr/local/bin/containerd", p["MainPID"], exe)
	}
	if hostSum, _ := fileHash("/usr/bin/containerd", sha256.New); hostSum == "" {
		t.Fatal("cannot hash /usr/bin/containerd")
	} else if got, _ := fileHash(filepath.Join(b.root, "usr/local/bin/containerd"), sha256.New); got != hostSum {
		t.Errorf("/usr/local/bin/containerd in the node is not the released binary (sha256 %s, want %s)", got, hostSum)
	}
	t.Logf("containerd.service: MainPID %s, cgroup %s", p["MainPID"], p["ControlGroup"])
	if t.Failed() {
		t.FailNow()
	}
	if got := hostKeysNamed(token); len(got) != 0 {
		t.Fatalf("keys named %s before the containers ran: %q", token, got)
	}

	runContainers(t, b, token)
	b.phase("containers")

	cgroups := append([]string(nil), n.cgroups...)
	n.poweroff(t)
	b.phase("poweroff")
	for _, d := range cgroups {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the node's cgroup %s is left after poweroff: %v", d, err)
		}
	}
	if got := hostCgroupsNamed(token); len(got) != 0 {
		t.Errorf("cgroups of the node's containers left on the host: %v", got)
	}
	// The kernel drops a keyring with its last user, and collects it soon
	// after.
	for deadline := time.Now().Add(10 * time.Second); len(hostKeysNamed(token)) > 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("keyrings of the node's containers left on the host: %q", hostKeysNamed(token))
			break
		}
	}
}

// runContainers runs busybox containers with ctr inside the node: under
// runc (its cgroup made by the node's systemd, inside the node's cgroup on
// the host), and under runsc.
func runContainers(t *testing.T, b *cloudInitBoot, token string) {
	t.Helper()
	n := b.n
	const rootfs = "/var/lib/nodeprov-e2e/busybox/rootfs"
	ctr := func(t *testing.T, args ...string) result {
		t.Helper()
		return n.mustRunWithin(t, 2*time.Minute, append([]string{"ctr"}, args...)...)
	}

	// What the node offers, and what nodeprov configured.
	fsType := strings.TrimSpace(n.mustSh(t, "stat -f -c %T /sys/fs/cgroup"))
	controllers := strings.Fields(n.mustSh(t, "cat /sys/fs/cgroup/cgroup.controllers"))
	t.Logf("node cgroups: %s at /sys/fs/cgroup, controllers %q", fsType, controllers)
	if fsType != "cgroup2fs" {
		t.Fatalf("the node's /sys/fs/cgroup is %s: SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 did not give it cgroup2", fsType)
	}
	var cfg map[string]any
	cfgText, err := os.ReadFile(filepath.Join(b.root, "etc/containerd/config.toml"))
	if err == nil {
		err = toml.Unmarshal(cfgText, &cfg)
	}
	if err != nil {
		t.Fatalf("containerd config: %v", err)
	}
	runtimes := []string{"plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes"}
	systemdCgroup, _ := tomlPath(cfg, append(runtimes, "runc", "options", "SystemdCgroup")...).(bool)
	runscType, _ := tomlPath(cfg, append(runtimes, "runsc", "runtime_type")...).(string)
	runscBinary, _ := tomlPath(cfg, append(runtimes, "runsc", "options", "BinaryName")...).(string)
	runscSystemd, _ := tomlPath(cfg, append(runtimes, "runsc", "options", "SystemdCgroup")...).(bool)
	t.Logf("containerd config: runc SystemdCgroup=%v; runsc %s BinaryName=%s SystemdCgroup=%v", systemdCgroup, runscType, runscBinary, runscSystemd)
	if !systemdCgroup {
		t.Errorf("cgroupDriver auto chose cgroupfs on a node with systemd and cgroup2:\n%s", cfgText)
	}
	if runscType != "io.containerd.runc.v2" || runscBinary != "/usr/local/bin/runsc" {
		t.Fatalf("runsc runtime in config.toml: type %q BinaryName %q\n%s", runscType, runscBinary, cfgText)
	}
	has := map[string]bool{}
	for _, c := range controllers {
		has[c] = true
	}
	// `ctr run` of a container named id running cmd, with the config's
	// cgroup driver; opts go first.
	run := func(t *testing.T, id string, systemd bool, opts []string, cmd ...string) result {
		t.Helper()
		f := append([]string{"run"}, opts...)
		if !has["cpu"] {
			f = append(f, "--cpu-shares", "0") // ctr's default 1024 needs cpu.weight
		}
		if systemd {
			f = append(f, "--runc-systemd-cgroup", "--cgroup", "system.slice:"+token+":"+id)
		}
		// --rootfs is a switch: the first argument is then the root
		// file system instead of an image.
		return ctr(t, append(append(f, "--rootfs", rootfs, id), cmd...)...)
	}
	if got := strings.TrimSpace(n.mustSh(t, "command -v runc")); got != "/usr/local/sbin/runc" {
		t.Errorf("runc on the node's PATH is %q, want the installed /usr/local/sbin/runc", got)
	}
	release := strings.TrimSpace(n.mustSh(t, "uname -r"))

	t.Run("runc", func(t *testing.T) {
		start := time.Now()
		id := token + "-runc"
		r := run(t, id, systemdCgroup, []string{"--rm"}, "/bin/sh", "-c", "echo ran-under-runc; uname -r; cat /proc/self/cgroup")
		if r.code != 0 || !strings.Contains(r.stdout, "ran-under-runc\n"+release+"\n") {
			t.Fatalf("ctr run under runc:\n%s", r)
		}
		t.Logf("runc container in %s: %q", time.Since(start).Round(10*time.Millisecond), r.stdout)
		// runc's systemd driver: slice:prefix:name is the scope prefix-name.scope.
		if systemdCgroup && !strings.Contains(r.stdout, "0::/system.slice/"+token+"-"+id+".scope\n") {
			t.Errorf("the runc container is not in a scope of the node's systemd:\n%s", r.stdout)
		}

		// A long-running one: its cgroup is on the host inside the node's
		// own cgroup, and goes away with it.
		id = token + "-sleep"
		r = run(t, id, systemdCgroup, []string{"-d", "--null-io"}, "/bin/busybox", "sleep", "600")
		if r.code != 0 {
			t.Fatalf("ctr run -d under runc:\n%s", r)
		}
		var inNode []string
		for _, d := range hostCgroupsNamed(token) {
			for _, nc := range n.cgroups {
				if strings.HasPrefix(d, nc+"/") {
					inNode = append(inNode, d)
				}
			}
		}
		all := hostCgroupsNamed(token)
		if len(inNode) == 0 || len(inNode) != len(all) {
			t.Errorf("the running container's cgroups on the host: %v, of which inside the node's cgroups %v: %v", all, n.cgroups, inNode)
		} else {
			procs, _ := os.ReadFile(filepath.Join(inNode[len(inNode)-1], "cgroup.procs"))
			t.Logf("running runc container: host cgroup %s, processes %q", inNode[len(inNode)-1], strings.Fields(string(procs)))
			if len(bytes.TrimSpace(procs)) == 0 {
				t.Errorf("no process in %s", inNode[len(inNode)-1])
			}
		}
		// keyctl is allowed in the node for this: the kernel keyring is
		// the host's, and the container's session keyring shows there.
		if keys := hostKeysNamed(token); !strings.Contains(strings.Join(keys, "\n"), " _ses."+id+":") {
			t.Errorf("runc's session keyring for %s is not in the host's /proc/keys: %q", id, keys)
		}
		if r := ctr(t, "task", "kill", "-s", "SIGKILL", id); r.code != 0 {
			t.Errorf("ctr task kill:\n%s", r)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if r := ctr(t, "task", "delete", id); r.code == 0 || time.Now().After(deadline) {
				if r.code != 0 {
					t.Errorf("ctr task delete:\n%s", r)
				}
				break
			}
		}
		if r := ctr(t, "container", "delete", id); r.code != 0 {
			t.Errorf("ctr container delete:\n%s", r)
		}
		for deadline := time.Now().Add(20 * time.Second); len(hostCgroupsNamed(token)) > 0; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("cgroups left after the container was deleted: %v", hostCgroupsNamed(token))
				break
			}
		}
	})

	t.Run("runsc", func(t *testing.T) {
		// runsc refuses a sandbox network in a namespace it takes for
		// the host's; --network=none runs it without one
		// (shared/FACTS.md). The runc shim passes no flags to its
		// binary, so wrappers add them.
		const netNone, noCgroups = "/usr/local/lib/nodeprov-e2e/runsc-network-none", "/usr/local/lib/nodeprov-e2e/runsc-ignore-cgroups"
		n.writeFile(t, netNone, []byte("#!/bin/sh\nexec "+runscBinary+" --network=none \"$@\"\n"), 0o755)
		n.writeFile(t, noCgroups, []byte("#!/bin/sh\nexec "+runscBinary+" --network=none --ignore-cgroups \"$@\"\n"), 0o755)
		var missing []string
		for _, c := range []string{"cpu", "cpuset", "io", "memory", "pids"} { // gVisor's mandatory ones
			if !has[c] {
				missing = append(missing, c)
			}
		}
		binary := netNone
		id := token + "-runsc-cg"
		r := run(t, id, runscSystemd, []string{"--rm", "--runc-binary", netNone}, "/bin/sh", "-c", "echo ran-under-runsc")
		if len(missing) == 0 {
			if r.code != 0 || !strings.Contains(r.stdout, "ran-under-runsc") {
				t.Fatalf("ctr run under runsc with its own cgroup:\n%s", r)
			}
		} else {
			// The proof that runsc cannot have a cgroup here.
			refused := regexp.MustCompile(`cannot set up cgroup for root: configuring cgroup: (mandatory cgroup controller "[a-z]+" is missing|write /sys/fs/cgroup/[^ ]*cgroup\.subtree_control: invalid argument)`)
			if r.code == 0 || !refused.MatchString(r.stderr) {
				t.Fatalf("runsc in a cgroup2 hierarchy without %v: want its cgroup refused (%s):\n%s", missing, refused, r)
			}
			t.Logf("runsc cannot create its cgroup (node's cgroup2 lacks %v): %s", missing, strings.TrimSpace(r.stderr))
			if ls := ctr(t, "container", "ls", "-q"); strings.Contains(ls.stdout, id) {
				t.Errorf("the refused runsc container was left behind: %q", ls.stdout)
			}
			binary = noCgroups
		}

		start := time.Now()
		id = token + "-runsc"
		r = run(t, id, runscSystemd, []string{"--rm", "--runc-binary", binary}, "/bin/sh", "-c", "echo ran-under-runsc; uname -r; /bin/busybox dmesg")
		if r.code != 0 || !strings.Contains(r.stdout, "ran-under-runsc\n") {
			t.Fatalf("ctr run under runsc (%s):\n%s", binary, r)
		}
		lines := strings.SplitN(r.stdout[strings.Index(r.stdout, "ran-under-runsc\n"):], "\n", 3)
		if len(lines) < 3 {
			t.Fatalf("ctr run under runsc: no kernel release and dmesg:\n%s", r)
		}
		t.Logf("runsc container (%s) in %s: kernel %q; dmesg: %q", filepath.Base(binary), time.Since(start).Round(10*time.Millisecond),
			lines[1], strings.SplitN(lines[2], "\n", 2)[0])
		// gVisor's own kernel answers, not the node's.
		if lines[1] == release || !strings.Contains(r.stdout, "gVisor") {
			t.Errorf("the container did not run in a gVisor sandbox (kernel %q, node's %q):\n%s", lines[1], release, r.stdout)
		}
	})

	if ls := ctr(t, "container", "ls", "-q"); strings.TrimSpace(ls.stdout) != "" {
		t.Errorf("containers left in containerd: %q", ls.stdout)
	}
}

// TestCloudInitBootUnknownKey: user data whose spec has a misspelt key
// (edited by hand after `nodeprov cloud-init` validated it, or written
// for a newer nodeprov) makes cloud-init report an error, not hang; the
// report names the key with file:line:col; nothing was provisioned.
func TestCloudInitBootUnknownKey(t *testing.T) {
	a := releaseArtifacts(t)
	nspawnNodeEnv(t)
	var line int
	edit := func(t *testing.T, ud string) string {
		// The spec travels as a literal block indented by six spaces.
		const from, to = "\n        sysctl:\n", "\n        sysctls:\n"
		if strings.Count(ud, from) != 1 {
			t.Fatalf("user data does not carry the spec's sysctl key once:\n%s", ud)
		}
		return strings.Replace(ud, from, to, 1)
	}
	b := bootWithCloudInit(t, a, cloudInitSpecOptions{}, 3*time.Minute, []string{"--gzip", "never"}, edit)
	defer b.logPhases(t)
	for i, l := range strings.Split(b.spec, "\n") {
		if l == "  sysctl:" {
			line = i + 1
		}
	}
	checkCloudInitError(t, b, 2)
	checkNodeprovFetched(t, b)

	rep, raw := cloudInitReport(t, b.n)
	if rep.OK || rep.Error == nil || rep.Error.Class != "invalid-spec" || len(rep.Diagnostics) != 1 {
		t.Fatalf("report: want one diagnostic and an invalid-spec error:\n%s", raw)
	}
	d := rep.Diagnostics[0]
	if d.File != "/etc/nodeprov/node.yaml" || d.Line != line || d.Column != 3 || d.Path != "kernel" || !strings.Contains(d.Message, `unknown key "sysctls"`) {
		t.Errorf("diagnostic %+v, want /etc/nodeprov/node.yaml:%d:3 at kernel naming the unknown key sysctls", d, line)
	}
	t.Logf("nodeprov's report: %s:%d:%d: %s (path %s)", d.File, d.Line, d.Column, d.Message, d.Path)
	// The report of a run that stopped at the spec is still the record of
	// that run: an operator matches it with the boot by its time.
	t.Run("report startedAt", func(t *testing.T) { checkStartedAt(t, b.n, raw) })
	// Nothing was applied and nothing fetched but nodeprov itself.
	for _, p := range []string{"etc/containerd", "usr/local/bin/containerd", "etc/systemd/system/containerd.service", "etc/sysctl.d/99-nodeprov.conf"} {
		if _, err := os.Lstat(filepath.Join(b.root, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("/%s exists after an invalid spec: %v", p, err)
		}
	}
	if got := b.served.paths(); strings.Join(got, ",") != "/nodeprov" {
		t.Errorf("requests after an invalid spec: %v, want only /nodeprov", got)
	}
}

// TestCloudInitBootRefusedSysctl: a valid spec with a sysctl value the
// kernel refuses (`nodeprov cloud-init` cannot know) fails the first boot
// in the kernel stage: cloud-init reports the error, the report names the
// key and the kernel's answer, no boot-time file keeps the bad value, and
// no later stage ran.
func TestCloudInitBootRefusedSysctl(t *testing.T) {
	a := releaseArtifacts(t)
	nspawnNodeEnv(t)
	// The range is two numbers separated by whitespace, not a dash.
	o := cloudInitSpecOptions{extraSysctl: "    net.ipv4.ip_local_port_range: \"1024-65000\"\n"}
	b := bootWithCloudInit(t, a, o, 3*time.Minute, nil, nil)
	defer b.logPhases(t)
	checkCloudInitError(t, b, 1)
	checkNodeprovFetched(t, b)

	rep, raw := cloudInitReport(t, b.n)
	if rep.OK || rep.Error == nil {
		t.Fatalf("report: want a failed run:\n%s", raw)
	}
	e := rep.Error
	if e.Stage != "kernel" || !strings.Contains(e.Resource+e.Message, "net.ipv4.ip_local_port_range") ||
		!strings.Contains(e.Message, `kernel refused value "1024-65000"`) {
		t.Errorf("report error %+v: want the kernel stage naming net.ipv4.ip_local_port_range and the refused value", e)
	}
	t.Logf("nodeprov's report: stage %s, resource %q: %s", e.Stage, e.Resource, e.Message)
	checkStartedAt(t, b.n, raw)
	for _, p := range []string{"etc/sysctl.d/99-nodeprov.conf", "usr/local/bin/containerd", "etc/containerd"} {
		if _, err := os.Lstat(filepath.Join(b.root, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("/%s exists after the kernel stage failed: %v", p, err)
		}
	}
	if got := b.served.paths(); strings.Join(got, ",") != "/nodeprov" {
		t.Errorf("requests after the kernel stage failed: %v, want only /nodeprov", got)
	}
}
