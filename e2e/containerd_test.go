package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
	"golang.org/x/sys/unix"
)

// containerdEnv is a containerd instance with its own root, state and
// socket, started by a test and stopped at its end.
type containerdEnv struct {
	dir     string // short base dir (socket paths are limited to 108 bytes)
	root    string
	state   string
	address string
	// containerdBin and ctrBin are the binaries run: Debian's on PATH, or
	// containerd 2.x built for the test.
	containerdBin, ctrBin string
	// privateRun starts containerd in a mount namespace of its own with a
	// fresh tmpfs on /run: containerd 2.x creates /run/containerd at start
	// whatever its configured state directory, and a test must leave the
	// host's /run as it found it. Only for a containerd that runs no
	// containers (ctr's FIFOs live in the caller's /run).
	privateRun bool
	config     string // the config started with
	cmd        *exec.Cmd
	log        *os.File
}

func newContainerdEnv(t *testing.T) *containerdEnv {
	t.Helper()
	requireRoot(t)
	if _, err := exec.LookPath("containerd"); err != nil {
		t.Fatalf("containerd is not installed (make test installs the Debian package): %v", err)
	}
	dir, err := os.MkdirTemp("/tmp", "npc")
	if err != nil {
		t.Fatal(err)
	}
	e := &containerdEnv{dir: dir, root: dir + "/root", state: dir + "/state", address: dir + "/c.sock",
		containerdBin: "containerd", ctrBin: "ctr"}
	t.Cleanup(func() { e.stop(t); os.RemoveAll(dir) })
	return e
}

// command is containerd with args, in its own /run when privateRun.
func (e *containerdEnv) command(args ...string) *exec.Cmd {
	if !e.privateRun {
		return exec.Command(e.containerdBin, args...)
	}
	return exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "--",
		"sh", "-c", `mount -t tmpfs -o mode=0755 nodeprov-test-run /run && exec "$0" "$@"`, e.containerdBin}, args...)...)
}

// configDump is `containerd config dump` of the config containerd was
// started with: what it loads from it and its imports.
func (e *containerdEnv) configDump(t *testing.T) string {
	t.Helper()
	out, err := e.command("--config", e.config, "config", "dump").CombinedOutput()
	if err != nil {
		t.Fatalf("containerd config dump: %v\n%s", err, out)
	}
	return string(out)
}

// start runs containerd with config and waits until it answers on its
// socket; an early exit fails at once with the log.
func (e *containerdEnv) start(t *testing.T, config string) {
	t.Helper()
	var err error
	e.log, err = os.Create(filepath.Join(e.dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	e.config = config
	e.cmd = e.command("--config", config)
	e.cmd.Stdout, e.cmd.Stderr = e.log, e.log
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	proc := e.cmd.Process
	go func() {
		// Only notices an early exit (WNOWAIT): stop reaps the process.
		var info unix.Siginfo
		for unix.Waitid(unix.P_PID, proc.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
		}
		close(exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("containerd exited at start:\n%s", e.logText())
		default:
		}
		if r := e.ctr(t, "version"); r.code == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("containerd did not come up:\n%s", e.logText())
}

func (e *containerdEnv) ctr(t *testing.T, args ...string) result {
	t.Helper()
	return runCmd(t, "", e.ctrBin, append([]string{"--address", e.address}, args...)...)
}

func (e *containerdEnv) logText() string {
	b, _ := os.ReadFile(filepath.Join(e.dir, "containerd.log"))
	return string(b)
}

func (e *containerdEnv) stop(t *testing.T) {
	if e.cmd == nil || e.cmd.Process == nil {
		return
	}
	syscall.Kill(-e.cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- e.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	e.cmd = nil
	if e.log != nil {
		e.log.Close()
	}
	// containerd leaves its state mounts (shm, rootfs) behind when killed.
	out, _ := exec.Command("sh", "-c", fmt.Sprintf("grep -o ' %s[^ ]*' /proc/self/mounts | sort -r", e.dir)).Output()
	for _, m := range strings.Fields(string(out)) {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

// pluginStatus returns the STATUS column of `ctr plugins ls` for a plugin.
func (e *containerdEnv) pluginStatus(t *testing.T, typ, id string) string {
	t.Helper()
	r := e.ctr(t, "plugins", "ls")
	for _, line := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[0] == typ && f[1] == id {
			return f[len(f)-1]
		}
	}
	return "absent"
}

// TestRenderedConfigLoadsInRealContainerd applies a containerd section to a
// sandbox root and starts Debian's containerd 1.6 with the rendered config:
// the CRI plugin must load ("ok"). `config dump` would accept unknown keys,
// so the plugin status is what proves the render.
func TestRenderedConfigLoadsInRealContainerd(t *testing.T) {
	e := newContainerdEnv(t)
	root := sandbox(t)
	spec := writeSpec(t, fmt.Sprintf(`apiVersion: nodeprov/v1alpha1
kind: Node
containerd:
  configVersion: "2"
  cgroupDriver: cgroupfs
  root: %[1]s
  state: %[2]s
  address: %[3]s
  runtimes:
    runsc:
      type: io.containerd.runc.v2
      binaryName: /usr/bin/runsc
    gvisor:
      type: io.containerd.runsc.v1
      runscConfig: {network: none}
    kata:
      type: io.containerd.kata.v2
      configPath: /opt/kata/configuration.toml
      podAnnotations: ["io.katacontainers.*"]
      privilegedWithoutHostDevices: true
  registries:
    docker.io:
      server: https://127.0.0.1:2
      mirrors: [{host: "https://127.0.0.1:1", capabilities: [pull, resolve], auth: {identityToken: e2e-T0KEN}}]
    registry.example.com:
      auth: {username: robot, passwordFile: /etc/nodeprov/registry-password}
  cni: {network: none, binDir: %[4]s/cni/bin, confDir: %[4]s/cni/net.d}
  patch:
    # containerd creates the opt plugin's and CRI's directories: keep them
    # in the test's own directory, not on the host. The patch is a YAML
    # mapping, where null deletes a key: no conf.d imports.
    plugins:
      io.containerd.internal.v1.opt: {path: "%[4]s/opt"}
    imports: null
`, e.root, e.state, e.address, e.dir))
	writeRegistryPassword(t, root)
	if r := runNodeprov(t, "", "apply", "--root", root, spec); r.code != 0 {
		t.Fatalf("apply:\n%s", r)
	}
	config := filepath.Join(root, "etc/containerd/config.toml")
	e.start(t, config)
	if st := e.pluginStatus(t, "io.containerd.grpc.v1", "cri"); st != "ok" {
		t.Fatalf("CRI plugin status %q with the rendered config\nlog:\n%s", st, e.logText())
	}
	// The credentials are where containerd 1.6 reads them, next to
	// config_path (which refuses registry.mirrors, not configs.auth).
	dump := e.configDump(t)
	wantRegistryAuth(t, dump, "io.containerd.grpc.v1.cri")
	// The YAML patch took: the opt path is the test's, and the null
	// removed the conf.d import.
	var loaded map[string]any
	if err := toml.Unmarshal([]byte(dump), &loaded); err != nil {
		t.Fatal(err)
	}
	if got := tomlPath(loaded, "plugins", "io.containerd.internal.v1.opt", "path"); got != e.dir+"/opt" {
		t.Errorf("config dump: opt path %v, want %s", got, e.dir+"/opt")
	}
	if imports := fmt.Sprint(loaded["imports"]); strings.Contains(imports, "conf.d") {
		t.Errorf("config dump still imports conf.d after the patch deleted imports: %s", imports)
	}
	for _, line := range strings.Split(e.logText(), "\n") {
		// No conflist in the host's conf_dir is expected here (network: none).
		if strings.Contains(line, "level=error") && !strings.Contains(line, "failed to load cni during init") ||
			strings.Contains(line, "failed to load plugin io.containerd.grpc.v1.cri") {
			t.Errorf("containerd logged an error with the rendered config: %s", line)
		}
	}
	// The registry mirror configuration is accepted and resolves through
	// the mirror: ctr tries the mirror first. Mirror and server are closed
	// loopback ports, so nothing leaves the machine.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "ctr", "--address", e.address, "images", "pull",
		"--hosts-dir", filepath.Join(root, "etc/containerd/certs.d"), "docker.io/library/busybox:latest").CombinedOutput()
	if !strings.Contains(string(out), "127.0.0.1:1") {
		t.Errorf("ctr --hosts-dir did not resolve through the mirror:\n%s", out)
	}
}

// writeRegistryPassword puts the password a registry's passwordFile names
// into the root, private.
func writeRegistryPassword(t *testing.T, root string) {
	t.Helper()
	p := filepath.Join(root, "etc/nodeprov/registry-password")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("e2e-PASSWORD\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// wantRegistryAuth checks a `containerd config dump` for the credentials
// of registry.example.com (user and password) and the mirror 127.0.0.1:1
// (identity token) in the registry table of the CRI plugin plugin.
func wantRegistryAuth(t *testing.T, dump, plugin string) {
	t.Helper()
	var doc map[string]any
	if err := toml.Unmarshal([]byte(dump), &doc); err != nil {
		t.Fatalf("config dump is not TOML: %v\n%s", err, dump)
	}
	for _, want := range []struct{ host, key, value string }{
		{"127.0.0.1:1", "identitytoken", "e2e-T0KEN"},
		{"registry.example.com", "username", "robot"},
		{"registry.example.com", "password", "e2e-PASSWORD"},
	} {
		if got := tomlPath(doc, "plugins", plugin, "registry", "configs", want.host, "auth", want.key); got != want.value {
			t.Errorf("config dump: plugins.%q.registry.configs.%q.auth.%s = %v, want %q", plugin, want.host, want.key, got, want.value)
		}
	}
	if t.Failed() {
		t.Logf("config dump:\n%s", dump)
	}
}
