package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// dockerd is a Docker daemon (Debian's docker.io) of the test's own: its
// own data root, socket and cgroups, in a network namespace the test
// created, never the system's daemon or socket.
//
// It runs as PID 1 of a new PID namespace inside a private mount namespace
// whose /run and /etc/docker are fresh tmpfs mounts. That keeps every trace
// off the host: the exec root, pid file, containerd's state and shim
// sockets (containerd 1.6 puts those under /run/containerd whatever its
// --state), the overlay mounts of containers, and the key.json dockerd
// 20.10 writes to /etc/docker. It also hides a system containerd's socket,
// which dockerd would otherwise use instead of starting its own. If the
// test binary dies, the parent-death signals take down unshare and with it
// the PID namespace, so nothing keeps running. Networking is off
// (--bridge=none --iptables=false --ip-forward=false): containers run with
// --network host, which is the test's namespace, where it serves its
// artifact mirror on loopback.
type dockerd struct {
	name    string // of its cgroups: nodeprov-e2e-<name> in every hierarchy
	host    string // DOCKER_HOST: unix://<socket>
	data    string // --data-root
	log     string // the daemon's output
	cgroups []string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// dockerCLI is Debian's docker client, of the daemon's version (another
// docker may be first in PATH).
const dockerCLI = "/usr/bin/docker"

// startDockerd starts a daemon in ns and waits until it answers. It is
// stopped and everything it made removed when the test ends: containers
// and images through its API, then the daemon, its cgroups and its data
// root.
func startDockerd(t *testing.T, ns *netns) *dockerd {
	t.Helper()
	requireRoot(t)
	for _, bin := range []string{"/usr/sbin/dockerd", dockerCLI, "nsenter", "unshare"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is missing (make test installs docker.io and util-linux): %v", bin, err)
		}
	}
	dir := t.TempDir()
	rnd := make([]byte, 4)
	rand.Read(rnd)
	d := &dockerd{
		name:   nodeNamePrefix + "dockerd-" + hex.EncodeToString(rnd),
		host:   "unix://" + filepath.Join(dir, "docker.sock"),
		data:   filepath.Join(dir, "data"),
		log:    filepath.Join(dir, "dockerd.log"),
		exited: make(chan struct{}),
	}
	config := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(config, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// The daemon's cgroups, in every hierarchy: the daemon, its containerd
	// and shims run at the top, containers below it (a relative
	// --cgroup-parent is taken from the cgroup runc runs in).
	d.cgroups, err = makeNodeCgroups(d.name, true)
	if err != nil {
		removeCgroups(d.cgroups)
		t.Fatalf("cgroups for dockerd: %v", err)
	}
	const execRoot = "/run/nodeprov-e2e-docker" // on the private /run
	args := []string{
		"--config-file=" + config,
		"--data-root=" + d.data,
		"--exec-root=" + execRoot,
		"--pidfile=" + execRoot + ".pid",
		"-H", d.host,
		"--bridge=none", "--iptables=false", "--ip-forward=false", "--ip-masq=false",
		"--storage-driver=overlay2",
		"--exec-opt=native.cgroupdriver=cgroupfs",
		"--cgroup-parent=containers",
		// Nothing here may lower its oom_score_adj (no CAP_SYS_RESOURCE):
		// dockerd's default -500 would stop it.
		"--oom-score-adjust=0",
	}
	d.cmd = exec.Command("/bin/sh", append([]string{"-c",
		`for d in $DOCKERD_CGROUPS; do echo $$ > "$d/cgroup.procs" || exit 125; done
exec nsenter --net="$DOCKERD_NETNS" -- unshare --mount --propagation private --pid --fork --kill-child --mount-proc -- /bin/sh -c '
mount -t tmpfs -o mode=0755 tmpfs /run && mount -t tmpfs -o mode=0755 tmpfs /etc/docker || exit 125
exec /usr/sbin/dockerd "$@"' dockerd "$@"`,
		"sh"}, args...)...)
	d.cmd.Env = append(os.Environ(), "DOCKERD_CGROUPS="+strings.Join(d.cgroups, " "), "DOCKERD_NETNS="+ns.path())
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := startPinned(d.cmd, &d.waitErr, d.exited); err != nil {
		removeCgroups(d.cgroups)
		t.Fatalf("start dockerd: %v", err)
	}
	t.Cleanup(func() { d.stop(t) })

	start := time.Now()
	for deadline := start.Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if r := d.docker(t, "version", "--format", "{{.Server.Version}}"); r.code == 0 {
			t.Logf("dockerd %s answers on %s after %s", strings.TrimSpace(r.stdout), d.host, time.Since(start).Round(10*time.Millisecond))
			return d
		}
		select {
		case <-d.exited:
			t.Fatalf("dockerd exited: %v\n%s", d.waitErr, d.logTail(40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd does not answer after 60s:\n%s", d.logTail(40))
		}
	}
}

// checkConfined runs a container of image with --network host and checks
// that it lives in the daemon's cgroups, below its own, in every
// hierarchy, and that its network is the test's namespace: loopback only.
func (d *dockerd) checkConfined(t *testing.T, image string) {
	t.Helper()
	r := d.docker(t, "run", "--rm", "--network", "host", image, "/bin/sh", "-c", "cat /proc/self/cgroup; echo --; cat /proc/net/dev")
	cgroups, netdev, ok := strings.Cut(r.stdout, "--\n")
	if r.code != 0 || !ok {
		t.Fatalf("docker run:\n%s", r)
	}
	v1 := 0
	for _, line := range strings.Split(strings.TrimSpace(cgroups), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || f[1] == "" { // cgroup2: dockerd manages v1 here
			continue
		}
		v1++
		if !strings.Contains(f[2], "/nodeprov-e2e-"+d.name+"/containers/") {
			t.Errorf("a container of the test's dockerd runs outside its cgroup: %s", line)
		}
	}
	if v1 == 0 {
		t.Errorf("no cgroup v1 hierarchy in the container's /proc/self/cgroup:\n%s", cgroups)
	}
	var links []string
	for _, line := range strings.Split(netdev, "\n") {
		if name, _, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			links = append(links, name)
		}
	}
	if len(links) != 1 || links[0] != "lo" {
		t.Errorf("a container of the test's dockerd sees interfaces %v, want only lo", links)
	}
}

// env is what a docker client (or packer) needs in its environment to
// talk to the daemon, with a client configuration of its own.
func (d *dockerd) env() []string {
	return []string{"DOCKER_HOST=" + d.host, "DOCKER_CONFIG=" + filepath.Join(filepath.Dir(d.data), "client")}
}

// docker runs the docker client against the daemon.
func (d *dockerd) docker(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, dockerCLI, args...)
	cmd.Env = append(os.Environ(), d.env()...)
	r, err := runCaptured(cmd)
	if err != nil {
		t.Fatalf("docker %s: %v", strings.Join(args, " "), err)
	}
	return r
}

func (d *dockerd) logTail(lines int) string {
	b, _ := os.ReadFile(d.log)
	return tail(string(b), lines)
}

// stop removes the daemon's containers and images through its API, stops
// it (SIGTERM, then SIGKILL of the namespace), and removes its cgroups and
// data root. Anything it cannot remove fails the test.
func (d *dockerd) stop(t *testing.T) {
	t.Helper()
	select {
	case <-d.exited:
	default:
		if r := d.docker(t, "ps", "-aq"); r.code == 0 && strings.TrimSpace(r.stdout) != "" {
			if r := d.docker(t, append([]string{"rm", "-f", "-v"}, strings.Fields(r.stdout)...)...); r.code != 0 {
				t.Errorf("remove the test's containers:\n%s", r)
			}
		}
		if r := d.docker(t, "images", "-aq"); r.code == 0 && strings.TrimSpace(r.stdout) != "" {
			if r := d.docker(t, append([]string{"rmi", "-f"}, strings.Fields(r.stdout)...)...); r.code != 0 {
				t.Errorf("remove the test's images:\n%s", r)
			}
		}
		// unshare's child is the daemon, PID 1 of its namespace.
		if pid := childOf(d.cmd.Process.Pid); pid != 0 {
			unix.Kill(pid, unix.SIGTERM)
		}
		select {
		case <-d.exited:
		case <-time.After(20 * time.Second):
			t.Errorf("dockerd did not stop within 20s of SIGTERM; killing it")
			d.cmd.Process.Kill()
			<-d.exited
		}
	}
	if t.Failed() {
		t.Logf("dockerd log (tail):\n%s", d.logTail(60))
	}
	if err := removeCgroups(d.cgroups); err != nil {
		t.Errorf("dockerd: %v", err)
	}
	if err := removeTree(d.data); err != nil {
		t.Errorf("remove dockerd's data root: %v", err)
	}
}

// childOf returns the first child of pid, or 0.
func childOf(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}

// removeCgroups removes cgroup trees, children first (a cgroup directory
// goes only with rmdir, and only once empty).
func removeCgroups(tops []string) error {
	var errs []error
	for _, top := range tops {
		dirs, _ := cgroupTree(top)
		for _, d := range dirs {
			var err error
			// The last processes may still be exiting.
			for i := 0; i < 50; i++ {
				if err = unix.Rmdir(d); err == nil || errors.Is(err, unix.ENOENT) || !errors.Is(err, unix.EBUSY) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}
