package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// node is a root directory booted with real systemd in systemd-nspawn.
//
// The host's PID 1 is not systemd, so nspawn runs with --register=no
// --keep-unit (no machined, no scope unit), and the test reaches the
// container with nsenter into the namespaces of its PID 1 (the leader).
// Each node gets its own cgroup in the name=systemd and cgroup2
// hierarchies: nspawn puts the container under the cgroup it runs in, and
// two nodes in the same one would share /payload and fight over it.
type node struct {
	name    string // machine name, unique per boot
	root    string
	ns      *netns
	dir     string // the test's directory: console log
	console string // path of the console log
	cgroups []string
	cmd     *exec.Cmd
	leader  int
	exited  chan struct{} // closed when systemd-nspawn has exited
	waitErr error         // systemd-nspawn's exit, valid after exited
	started time.Time     // when systemd-nspawn was started
	stopped bool
}

// bootOptions tune startNode; the zero value is a node in a fresh network
// namespace of its own.
type bootOptions struct {
	// ns is the network namespace the node runs in (the test can serve
	// its loopback mirror there); nil makes a new one.
	ns *netns
	// args are extra systemd-nspawn options: --bind=, --capability=,
	// --property=.
	args []string
	// timeout bounds the wait for systemd to finish booting; 0 is two
	// minutes.
	timeout time.Duration
	// containers lets the node run containers: it gets its own cgroup in
	// every controller hierarchy too (so that the cgroup namespace nspawn
	// makes is rooted there and all a runtime creates is removed with the
	// node), and the hierarchies nspawn mounts read-only on a cgroup v1
	// host are remounted read-write inside it (nspawn does that only with
	// user namespaces, and runc must mkdir in them).
	containers bool
}

// nodeNamePrefix starts the machine name of every node; the node's cgroups
// are named nodeprov-e2e-<machine name>.
const nodeNamePrefix = "npe2e-"

// nodePath is PATH for commands run inside a node.
const nodePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// bootNode starts a node and waits until systemd reports the system
// running (or degraded).
func bootNode(t *testing.T, root string, opts bootOptions) *node {
	t.Helper()
	n := startNode(t, root, opts)
	n.waitRunning(t, opts.timeout)
	return n
}

// startNode starts systemd-nspawn on root and returns once the container's
// PID 1 is systemd. Everything is undone when the test ends: the node is
// powered off (killed if it does not stop), its cgroups and nspawn's state
// files are removed. On failure the console and the journal are logged
// first.
func startNode(t *testing.T, root string, opts bootOptions) *node {
	t.Helper()
	requireRoot(t)
	if opts.ns == nil {
		opts.ns = newNetns(t)
	}
	root, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	rnd := make([]byte, 4)
	rand.Read(rnd)
	n := &node{
		name:   nodeNamePrefix + hex.EncodeToString(rnd),
		root:   root,
		ns:     opts.ns,
		dir:    t.TempDir(),
		exited: make(chan struct{}),
	}
	n.console = filepath.Join(n.dir, "console.log")
	console, err := os.Create(n.console)
	if err != nil {
		t.Fatal(err)
	}
	defer console.Close()
	cgroups, err := makeNodeCgroups(n.name, opts.containers)
	n.cgroups = cgroups
	if err != nil {
		n.removeCgroups(t)
		t.Fatalf("cgroups for %s: %v", n.name, err)
	}

	args := []string{
		"--register=no", "--keep-unit",
		"--link-journal=no", // never touch the host's /var/log/journal
		"--console=read-only",
		"--network-namespace-path=" + n.ns.path(),
		"--machine=" + n.name,
		"--directory=" + root,
	}
	args = append(args, opts.args...)
	args = append(args, "--boot")
	// The shell moves itself into the node's cgroups, then becomes
	// unshare, which runs nspawn as PID 1 of a new PID namespace. The
	// container does not die with nspawn, but every process of a PID
	// namespace dies with its PID 1: if the test binary dies (a go test
	// timeout), the parent-death signals take down unshare, nspawn and
	// with them the whole container, and nothing is left running.
	n.cmd = exec.Command("/bin/sh", append([]string{"-c",
		`for d in $NODE_CGROUPS; do echo $$ > "$d/cgroup.procs" || exit 125; done
exec unshare --pid --fork --kill-child -- systemd-nspawn "$@"`,
		"sh"}, args...)...)
	n.cmd.Env = append(os.Environ(), "NODE_CGROUPS="+strings.Join(cgroups, " "))
	n.cmd.Stdout, n.cmd.Stderr = console, console
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := startPinned(n.cmd, &n.waitErr, n.exited); err != nil {
		n.removeCgroups(t)
		t.Fatalf("start systemd-nspawn: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			n.logDebug(t)
		}
		n.stop(t)
		n.cleanup(t)
	})

	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if pid := findLeader(n.cmd.Process.Pid); pid != 0 {
			n.leader = pid
			break
		}
		select {
		case <-n.exited:
			t.Fatalf("systemd-nspawn exited before systemd started: %v", n.waitErr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no systemd in the container after 30s")
		}
	}
	n.started = start
	if opts.containers {
		n.writableCgroups(t)
	}
	return n
}

// writableCgroups remounts the node's controller hierarchies read-write,
// from the host side of its mount namespace (with CAP_SYS_ADMIN there).
func (n *node) writableCgroups(t *testing.T) {
	t.Helper()
	mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", n.leader))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		_, post, ok := strings.Cut(line, " - ")
		if !ok || len(f) < 6 || !strings.HasPrefix(post, "cgroup ") || !strings.HasPrefix(f[5], "ro") {
			continue
		}
		out, err := exec.Command("nsenter", "-t", strconv.Itoa(n.leader), "-m", "--",
			"mount", "-o", "remount,bind,rw", f[4]).CombinedOutput()
		if err != nil {
			t.Fatalf("remount %s read-write in node %s: %v\n%s", f[4], n.name, err, out)
		}
	}
}

// startPinned starts cmd, whose SysProcAttr has a parent-death signal, and
// waits for it in the background: when it has exited, *waitErr holds what
// Wait returned and exited is closed. The parent-death signal fires when
// the thread that forked the child exits, not the process: the runtime
// ends threads (those locked by netns goroutines that return), so the fork
// happens on a thread locked to the waiting goroutine until cmd exits.
func startPinned(cmd *exec.Cmd, waitErr *error, exited chan struct{}) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := cmd.Start()
		started <- err
		if err != nil {
			return
		}
		*waitErr = cmd.Wait()
		close(exited)
	}()
	return <-started
}

// findLeader returns the PID (on the host) of the container's PID 1 once it
// runs systemd: a descendant of the process started (unshare, then nspawn)
// that is PID 1 in its own PID namespace. /proc/PID/root cannot tell
// containers apart: after pivot_root it reads "/" from outside.
func findLeader(top int) int {
	type proc struct {
		ppid  int
		nspid []string
	}
	procs := map[int]proc{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		var p proc
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "PPid:"); ok {
				p.ppid, _ = strconv.Atoi(strings.TrimSpace(v))
			}
			if v, ok := strings.CutPrefix(line, "NSpid:"); ok {
				p.nspid = strings.Fields(v)
			}
		}
		procs[pid] = p
	}
	descends := func(pid int) bool {
		for i := 0; i < 8 && pid > 1; i++ {
			pid = procs[pid].ppid
			if pid == top {
				return true
			}
		}
		return false
	}
	for pid, p := range procs {
		if len(p.nspid) < 2 || p.nspid[len(p.nspid)-1] != "1" || !descends(pid) {
			continue
		}
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "systemd" {
			return pid
		}
	}
	return 0
}

// waitRunning waits until `systemctl is-system-running` says running or
// degraded (which it logs with the failed units).
func (n *node) waitRunning(t *testing.T, timeout time.Duration) {
	t.Helper()
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	var state string
	for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		select {
		case <-n.exited:
			t.Fatalf("node %s: systemd-nspawn exited while booting (%v), last state %q", n.name, n.waitErr, state)
		default:
		}
		r := n.run(t, "", "systemctl", "is-system-running")
		state = strings.TrimSpace(r.stdout)
		if state == "running" || state == "degraded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s: not booted after %s: is-system-running says %q (%s)", n.name, timeout, state, strings.TrimSpace(r.stderr))
		}
	}
	if state == "degraded" {
		t.Logf("node %s: degraded; failed units:\n%s", n.name, n.run(t, "", "systemctl", "--failed", "--no-legend", "--plain").stdout)
	}
	t.Logf("node %s: booted (%s) in %s, leader pid %d", n.name, state, time.Since(n.started).Round(10*time.Millisecond), n.leader)
}

// command returns a command that runs inside the node: all of its
// namespaces and its root, with a clean environment.
func (n *node) command(ctx context.Context, args ...string) *exec.Cmd {
	base := []string{"-t", strconv.Itoa(n.leader), "-a", "--",
		"/usr/bin/env", "-i", "PATH=" + nodePath, "HOME=/root", "LANG=C.UTF-8", "TERM=dumb", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER="}
	return exec.CommandContext(ctx, "nsenter", append(base, args...)...)
}

// run runs a command inside the node, feeding it stdin; it fails the test
// only when the command cannot be run at all or outlives ten minutes.
func (n *node) run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := n.command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("node %s: %s: timed out\n%s%s", n.name, strings.Join(args, " "), out.String(), errb.String())
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("node %s: run %s: %v", n.name, strings.Join(args, " "), err)
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// sh runs a shell script inside the node.
func (n *node) sh(t *testing.T, script string) result {
	t.Helper()
	return n.run(t, "", "/bin/sh", "-c", script)
}

// mustSh runs a shell script inside the node and returns its standard
// output; a non-zero exit fails the test.
func (n *node) mustSh(t *testing.T, script string) string {
	t.Helper()
	r := n.sh(t, script)
	if r.code != 0 {
		t.Fatalf("node %s: %s\n%s", n.name, script, r)
	}
	return r.stdout
}

// writeFile writes data to path inside the node (also under /run or /tmp,
// which the host cannot see), creating parent directories.
func (n *node) writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	r := n.run(t, string(data), "/bin/sh", "-c", `mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1"`,
		"sh", path, fmt.Sprintf("%o", mode))
	if r.code != 0 {
		t.Fatalf("node %s: write %s:\n%s", n.name, path, r)
	}
}

// unitProps returns systemd properties of a unit (systemctl show).
func (n *node) unitProps(t *testing.T, unit string, props ...string) map[string]string {
	t.Helper()
	r := n.run(t, "", "systemctl", "show", "--property="+strings.Join(props, ","), unit)
	if r.code != 0 {
		t.Fatalf("node %s: systemctl show %s:\n%s", n.name, unit, r)
	}
	out := map[string]string{}
	for _, line := range strings.Split(r.stdout, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			out[k] = v
		}
	}
	return out
}

// journal returns the node's journal of this boot, for one unit or (unit
// "") everything, the last lines lines.
func (n *node) journal(t *testing.T, unit string, lines int) string {
	t.Helper()
	args := []string{"journalctl", "-b", "--no-pager", "-n", strconv.Itoa(lines)}
	if unit != "" {
		args = append(args, "-u", unit)
	}
	r := n.run(t, "", args...)
	return r.stdout + r.stderr
}

var ansiEscape = regexp.MustCompile("\x1b\\[[0-9;]*[a-zA-Z]")

// consoleText is what the node printed on its console, without colours.
func (n *node) consoleText() string {
	b, _ := os.ReadFile(n.console)
	return ansiEscape.ReplaceAllString(string(b), "")
}

// running reports whether systemd-nspawn still runs.
func (n *node) running() bool {
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// logDebug logs what explains a failure: the console and, while the node
// runs, its failed units and the journal.
func (n *node) logDebug(t *testing.T) {
	t.Logf("node %s console (tail):\n%s", n.name, tail(n.consoleText(), 40))
	if n.running() && n.leader != 0 {
		t.Logf("node %s failed units:\n%s", n.name, n.run(t, "", "systemctl", "--failed", "--no-legend", "--plain").stdout)
		t.Logf("node %s journalctl -b (tail):\n%s", n.name, n.journal(t, "", 80))
	}
}

// poweroff shuts the node down the way an operator would and fails the
// test unless it stops cleanly. Its root can then be booted again.
func (n *node) poweroff(t *testing.T) {
	t.Helper()
	start := time.Now()
	if r := n.run(t, "", "systemctl", "poweroff", "--no-block"); r.code != 0 {
		t.Fatalf("node %s: systemctl poweroff:\n%s", n.name, r)
	}
	select {
	case <-n.exited:
	case <-time.After(90 * time.Second):
		t.Fatalf("node %s: still running 90s after poweroff", n.name)
	}
	n.stopped = true
	if n.waitErr != nil {
		t.Fatalf("node %s: systemd-nspawn after poweroff: %v\n%s", n.name, n.waitErr, tail(n.consoleText(), 20))
	}
	n.cleanup(t)
	t.Logf("node %s: powered off in %s", n.name, time.Since(start).Round(10*time.Millisecond))
}

// stop ends the node whatever its state: poweroff, and after a grace
// period SIGKILL to its PID 1 (which ends every process of its PID
// namespace) and to unshare (which ends nspawn's).
func (n *node) stop(t *testing.T) {
	if n.stopped {
		return
	}
	n.stopped = true
	if !n.running() {
		return
	}
	if n.leader != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := n.command(ctx, "systemctl", "poweroff", "--no-block").Run()
		cancel()
		if err == nil {
			select {
			case <-n.exited:
				return
			case <-time.After(60 * time.Second):
				t.Logf("node %s: no clean poweroff in 60s: killing it", n.name)
			}
		} else {
			t.Logf("node %s: systemctl poweroff: %v: killing it", n.name, err)
		}
		unix.Kill(n.leader, unix.SIGKILL)
		select {
		case <-n.exited:
			return
		case <-time.After(10 * time.Second):
		}
	}
	n.cmd.Process.Kill()
	<-n.exited
}

// cleanup removes what a node leaves on the host: its cgroups, and the
// state files nspawn removes itself on a clean exit but not when killed.
func (n *node) cleanup(t *testing.T) {
	n.removeCgroups(t)
	var st unix.Stat_t
	if unix.Stat(n.root, &st) == nil {
		os.Remove(fmt.Sprintf("/run/systemd/nspawn/locks/inode-%d:%d", st.Dev, st.Ino))
	}
	for _, d := range []string{"propagate", "unix-export"} {
		os.RemoveAll(filepath.Join("/run/systemd/nspawn", d, n.name))
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], n.root) {
			t.Errorf("node %s left a mount on the host: %s", n.name, line)
		}
	}
}

// makeNodeCgroups creates the node's cgroup, a child of the test process's
// own, in the hierarchies systemd in the container manages: name=systemd
// (cgroup v1 and hybrid hosts) and cgroup2; with controllers, in every v1
// controller hierarchy too. It returns the directories created, even with
// an error.
func makeNodeCgroups(name string, controllers bool) ([]string, error) {
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	// hierarchy ("name=systemd" or "" for cgroup2) → our path in it
	paths := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(own)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && (parts[1] == "name=systemd" || parts[1] == "" || controllers) {
			paths[parts[1]] = parts[2]
		}
	}
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, line := range strings.Split(string(mountinfo), "\n") {
		_, post, ok := strings.Cut(line, " - ")
		f := strings.Fields(line)
		pf := strings.Fields(post)
		if !ok || len(f) < 5 || len(pf) < 3 {
			continue
		}
		var key string
		switch {
		case pf[0] == "cgroup2":
			key = ""
		case pf[0] == "cgroup" && contains(strings.Split(pf[2], ","), "name=systemd"):
			key = "name=systemd"
		case pf[0] == "cgroup" && controllers:
			key = v1Controllers(pf[2])
		default:
			continue
		}
		own, ok := paths[key]
		if !ok || f[3] != "/" {
			continue
		}
		parent := filepath.Join(f[4], own)
		sweepStaleCgroups(parent)
		dir := filepath.Join(parent, "nodeprov-e2e-"+name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return dirs, err
		}
		dirs = append(dirs, dir)
		// A new cpuset has no CPUs and no memory nodes until given some.
		for _, file := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(parent, file)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, file), v, 0o644); err != nil {
					return dirs, err
				}
			}
		}
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("no name=systemd or cgroup2 hierarchy mounted")
	}
	return dirs, nil
}

// v1Controllers is the /proc/self/cgroup name of the v1 hierarchy whose
// super options are opts ("rw,cpu,cpuacct" -> "cpu,cpuacct").
func v1Controllers(opts string) string {
	var out []string
	for _, o := range strings.Split(opts, ",") {
		switch o {
		case "rw", "ro", "relatime", "nosuid", "nodev", "noexec", "clone_children", "noprefix", "xattr":
		default:
			out = append(out, o)
		}
	}
	return strings.Join(out, ",")
}

// sweepStaleCgroups removes node cgroups (and nspawn's state for their
// machines) left by a test binary that died without cleaning up: nodes
// whose cgroup tree holds no process and is over a minute old. A running
// node always has its PID 1 in it; a younger one may be about to be
// entered.
func sweepStaleCgroups(parent string) {
	tops, _ := filepath.Glob(filepath.Join(parent, "nodeprov-e2e-"+nodeNamePrefix+"*"))
	for _, top := range tops {
		st, err := os.Stat(top)
		if err != nil || time.Since(st.ModTime()) < time.Minute {
			continue
		}
		dirs, busy := cgroupTree(top)
		if busy {
			continue
		}
		for _, d := range dirs {
			unix.Rmdir(d)
		}
		name := strings.TrimPrefix(filepath.Base(top), "nodeprov-e2e-")
		for _, d := range []string{"propagate", "unix-export"} {
			os.RemoveAll(filepath.Join("/run/systemd/nspawn", d, name))
		}
	}
}

// cgroupTree lists a cgroup and its descendants, deepest first, and
// reports whether any of them holds a process.
func cgroupTree(top string) (dirs []string, busy bool) {
	filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
			if b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs")); len(bytes.TrimSpace(b)) > 0 {
				busy = true
			}
		}
		return nil
	})
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	return dirs, busy
}

// removeCgroups removes the node's cgroups.
func (n *node) removeCgroups(t *testing.T) {
	if err := removeCgroups(n.cgroups); err != nil {
		t.Errorf("node %s: %v", n.name, err)
	}
	n.cgroups = nil
}

// TestNspawnNode checks the node machinery itself: a fresh copy of the
// Debian root boots real systemd; commands run inside; files go in; the
// node's only network is the test's namespace, where the test process
// serves HTTP on the node's loopback; poweroff is clean and leaves nothing
// on the host; and the same root boots again with cloud-init running a
// NoCloud seed that fetches from the test's server during boot.
func TestNspawnNode(t *testing.T) {
	root := newNodeRoot(t)
	ns := newNetns(t)
	url := ns.serve(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "served by the test for %s\n", r.URL.Path)
	}))
	n := bootNode(t, root, bootOptions{ns: ns})

	if got := strings.TrimSpace(n.mustSh(t, "cat /proc/1/comm")); !strings.HasPrefix(got, "systemd") {
		t.Errorf("PID 1 in the node is %q, want systemd", got)
	}
	if out := n.mustSh(t, "nodeprov version"); !strings.Contains(out, "nodeprov") {
		t.Errorf("nodeprov version inside the node: %q", out)
	}
	links := n.mustSh(t, "ip -o link show | awk -F': ' '{print $2}'")
	if strings.TrimSpace(links) != "lo" {
		t.Errorf("the node has network interfaces besides lo: %q", links)
	}
	got := n.mustSh(t, "python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode(), end=\"\")' "+url+"/hello")
	if got != "served by the test for /hello\n" {
		t.Errorf("HTTP from inside the node to the test's server: %q", got)
	}
	n.writeFile(t, "/run/nodeprov-e2e/probe", []byte("in\n"), 0o600)
	if got := n.mustSh(t, "stat -c %a /run/nodeprov-e2e/probe; cat /run/nodeprov-e2e/probe"); got != "600\nin\n" {
		t.Errorf("file written into the node's /run: %q", got)
	}
	if p := n.unitProps(t, "dbus.service", "ActiveState"); p["ActiveState"] != "active" {
		t.Errorf("dbus.service: %v", p)
	}

	cgroups := append([]string(nil), n.cgroups...)
	n.poweroff(t)
	for _, d := range cgroups {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("cgroup %s left after poweroff: %v", d, err)
		}
	}
	if _, err := os.Stat(filepath.Join("/run/systemd/nspawn/propagate", n.name)); !os.IsNotExist(err) {
		t.Errorf("nspawn state left for %s: %v", n.name, err)
	}
	// The same root boots again, now with cloud-init and a NoCloud seed
	// whose runcmd fetches from the test's server during boot.
	seedNoCloud(t, root, "iid-nspawn-node", `#cloud-config
write_files:
  - path: /run/nodeprov-e2e/written
    content: "by cloud-init\n"
runcmd:
  - [python3, -c, "import urllib.request; open('/run/nodeprov-e2e/fetched', 'wb').write(urllib.request.urlopen('`+url+`/from-runcmd').read())"]
`)
	n = bootNode(t, root, bootOptions{ns: ns})
	start := time.Now()
	r := n.run(t, "", "cloud-init", "status", "--wait")
	if r.code != 0 || !strings.Contains(r.stdout, "status: done") {
		t.Fatalf("cloud-init status --wait:\n%s\n%s", r, n.journal(t, "cloud-final.service", 30))
	}
	t.Logf("cloud-init done %s after the boot finished", time.Since(start).Round(10*time.Millisecond))
	if got := n.mustSh(t, "cat /run/nodeprov-e2e/written /run/nodeprov-e2e/fetched"); got != "by cloud-init\nserved by the test for /from-runcmd\n" {
		t.Errorf("cloud-init's write_files and runcmd: %q", got)
	}
}
