package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// containerd2Release is a containerd 2.x release the renders are checked
// against and the config version nodeprov renders for it. They are built
// from Go modules: only the module proxy is reachable from CI, not GitHub
// release assets.
type containerd2Release struct {
	version       string
	configVersion int
}

// containerd2Releases are 2.1 (config version 3, bin_dirs) and the newest
// release the module proxy serves, 2.4 (config version 4: server plugins
// instead of [grpc]).
var containerd2Releases = []containerd2Release{{"v2.1.4", 3}, {"v2.4.2", 4}}

// containerd2Binaries returns containerd and ctr built from the containerd
// Go module at version, built once into the e2e cache (see cachedBuild),
// next to the release's containerd-shim-runc-v2 (the pods of the CRI
// tests need the shim of the daemon's release: 2.4 starts shims in a way
// 1.6's does not understand). A failed build fails the test: a render
// check that silently skips proves nothing.
func containerd2Binaries(t *testing.T, version string) (containerd, ctr string) {
	t.Helper()
	dir := cachedBuild(t, "containerd-"+strings.TrimPrefix(version, "v"),
		func(dir string) error { return containerd2Usable(dir, version) },
		func(ctx context.Context, out string, log io.Writer) error {
			return buildContainerd2(ctx, version, out, log)
		})
	return filepath.Join(dir, "containerd"), filepath.Join(dir, "ctr")
}

// containerd2Usable says whether both binaries run and are the expected
// release.
func containerd2Usable(dir, version string) error {
	want := strings.TrimPrefix(version, "v")
	for _, bin := range []string{"containerd", "ctr", "containerd-shim-runc-v2"} {
		flag := "--version"
		if bin == "containerd-shim-runc-v2" {
			flag = "-v"
		}
		out, err := exec.Command(filepath.Join(dir, bin), flag).Output()
		if err != nil {
			return fmt.Errorf("%s --version: %v", bin, err)
		}
		if !strings.Contains(string(out), want) {
			return fmt.Errorf("%s --version says %q, want %s", bin, bytes.TrimSpace(out), want)
		}
	}
	return nil
}

// buildContainerd2 builds containerd and ctr into out from a scratch module
// that requires the containerd module. `go install pkg@version` refuses
// modules with exclude directives, so the module is a dependency of a
// throwaway main module instead. The combined output of every step is
// returned.
func buildContainerd2(ctx context.Context, version, out string, log io.Writer) error {
	src := filepath.Join(out, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(src)
	const mod = "github.com/containerd/containerd/v2"
	main := fmt.Sprintf(`// Scratch module: keeps the containerd and ctr command packages and
// their dependencies in go.mod and go.sum so that they can be built.
package main

import (
	_ %[1]q
	_ %[2]q
	_ %[3]q
	_ %[4]q
	_ %[5]q
)

func main() {}
`, mod+"/cmd/containerd/builtins", mod+"/cmd/containerd/command", mod+"/cmd/ctr/app", mod+"/cmd/containerd-shim-runc-v2/manager", mod+"/cmd/containerd-shim-runc-v2/task/plugin")
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(main), 0o644); err != nil {
		return err
	}
	tags := "no_btrfs no_devmapper no_zfs"
	steps := [][]string{
		{"go", "mod", "init", "nodeprov.test/containerd2"},
		{"go", "get", mod + "@" + version},
		{"go", "mod", "tidy"},
		{"go", "build", "-trimpath", "-tags", tags, "-ldflags", "-s -w", "-o", filepath.Join(out, "containerd"), mod + "/cmd/containerd"},
		{"go", "build", "-trimpath", "-tags", tags, "-ldflags", "-s -w", "-o", filepath.Join(out, "ctr"), mod + "/cmd/ctr"},
		{"go", "build", "-trimpath", "-tags", tags, "-ldflags", "-s -w", "-o", filepath.Join(out, "containerd-shim-runc-v2"), mod + "/cmd/containerd-shim-runc-v2"},
	}
	for _, step := range steps {
		fmt.Fprintf(log, "$ %s\n", strings.Join(step, " "))
		cmd := exec.CommandContext(ctx, step[0], step[1:]...)
		cmd.Dir = src
		// The scratch module stands alone: no workspace, no toolchain
		// download, no vendoring or flags from the caller's environment.
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false")
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(step, " "), err)
		}
	}
	return nil
}

// newContainerd2Env is a containerdEnv that runs the given containerd and
// ctr binaries instead of the ones on PATH.
func newContainerd2Env(t *testing.T, containerdBin, ctrBin string) *containerdEnv {
	t.Helper()
	// A short base dir: the socket path is limited to 108 bytes.
	dir, err := os.MkdirTemp("/tmp", "npc2")
	if err != nil {
		t.Fatal(err)
	}
	e := &containerdEnv{dir: dir, root: dir + "/root", state: dir + "/state", address: dir + "/c.sock",
		containerdBin: containerdBin, ctrBin: ctrBin, privateRun: true}
	t.Cleanup(func() {
		e.stop(t)
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove the test's containerd directory: %v", err)
		}
	})
	return e
}

// unknownKeyLines returns the log lines in which containerd 2.x reports a
// config key it does not know: a key in the wrong table (a version 2 key
// in a version 3 file) or a typo. containerd starts anyway, so this line
// is the only sign of a wrong render.
func unknownKeyLines(log string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "Ignoring unknown key") {
			out = append(out, line)
		}
	}
	return out
}

// hostPaths are the host locations containerd and CNI use by default. A
// test containerd must create nothing there.
var hostPaths = []string{"/opt", "/etc/cni", "/etc/containerd", "/var/lib/containerd", "/run/containerd", "/run/nri", "/etc/nri", "/etc/cdi", "/run/cdi"}

// hostSnapshot records which of hostPaths exist and, for directories, the
// names directly in them.
func hostSnapshot() map[string]bool {
	seen := map[string]bool{}
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		seen[p] = true
		entries, _ := os.ReadDir(p)
		for _, e := range entries {
			seen[filepath.Join(p, e.Name())] = true
		}
	}
	return seen
}

// TestRenderedV3ConfigLoadsInContainerd2 renders config.toml for each
// containerd 2.x release (version 3 for 2.1, version 4 for 2.4) and starts
// that containerd (built from Go modules) with it: the CRI plugins must
// load, and containerd must report no unknown key, which is how 2.x
// answers a key in the wrong table. A second run with a deliberately
// misplaced key shows that the check catches one.
func TestRenderedV3ConfigLoadsInContainerd2(t *testing.T) {
	requireRoot(t)
	before := hostSnapshot()
	// Registered first, so it runs after every containerd is stopped.
	t.Cleanup(func() {
		var created []string
		for p := range hostSnapshot() {
			if !before[p] {
				created = append(created, p)
			}
		}
		sort.Strings(created)
		if len(created) > 0 {
			t.Errorf("the test created host paths outside its directory: %v", created)
		}
	})
	for _, rel := range containerd2Releases {
		t.Run(rel.version, func(t *testing.T) { testContainerd2Loads(t, rel) })
	}
}

func testContainerd2Loads(t *testing.T, rel containerd2Release) {
	containerdBin, ctrBin := containerd2Binaries(t, rel.version)

	// run applies the spec (with extraPatch appended to its patch) to a
	// sandbox root, checks the rendered file is version 3, and starts
	// containerd with it.
	run := func(t *testing.T, extraPatch string) *containerdEnv {
		e := newContainerd2Env(t, containerdBin, ctrBin)
		root := sandbox(t)
		spec := writeSpec(t, fmt.Sprintf(`apiVersion: nodeprov/v1alpha1
kind: Node
containerd:
  configVersion: "%[6]d"
  cgroupDriver: cgroupfs
  root: %[1]s
  state: %[2]s
  address: %[3]s
  runtimes:
    gvisor:
      type: io.containerd.runsc.v1
      runscConfig: {network: none}
    kata:
      type: io.containerd.kata.v2
      configPath: %[4]s/kata/configuration.toml
      podAnnotations: ["io.katacontainers.*"]
      privilegedWithoutHostDevices: true
    runsc:
      type: io.containerd.runc.v2
      binaryName: /usr/bin/runsc
  registries:
    docker.io:
      server: https://127.0.0.1:2
      mirrors: [{host: "https://127.0.0.1:1", capabilities: [pull, resolve], auth: {identityToken: e2e-T0KEN}}]
    registry.example.com:
      auth: {username: robot, passwordFile: /etc/nodeprov/registry-password}
  cni: {network: none, binDir: %[4]s/cni/bin, confDir: %[4]s/cni/net.d}
  patch: |
    # containerd creates the opt plugin's directory and NRI's socket:
    # keep them in the test's own directory, not on the host.
    [plugins."io.containerd.internal.v1.opt"]
    path = "%[4]s/opt"
    [plugins."io.containerd.nri.v1.nri"]
    socket_path = "%[4]s/nri.sock"
    plugin_path = "%[4]s/nri/plugins"
    plugin_config_path = "%[4]s/nri/conf.d"
%[5]s`, e.root, e.state, e.address, e.dir, indentLines(extraPatch, "    "), rel.configVersion))
		writeRegistryPassword(t, root)
		if r := runNodeprov(t, "", "apply", "--root", root, spec); r.code != 0 {
			t.Fatalf("apply:\n%s", r)
		}
		config := filepath.Join(root, "etc/containerd/config.toml")
		b, err := os.ReadFile(config)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{fmt.Sprintf("\nversion = %d\n", rel.configVersion), "bin_dirs = "} {
			if !strings.Contains(string(b), want) {
				t.Fatalf("rendered config lacks %q:\n%s", strings.TrimSpace(want), b)
			}
		}
		if strings.Contains(string(b), "bin_dir =") {
			t.Errorf("rendered config has the 2.0 key bin_dir for containerd 2.1:\n%s", b)
		}
		e.start(t, config)
		return e
	}

	t.Run("rendered", func(t *testing.T) {
		start := time.Now()
		e := run(t, "")
		t.Logf("containerd %s up in %s", rel.version, time.Since(start).Round(10*time.Millisecond))
		for _, p := range [][2]string{
			{"io.containerd.cri.v1", "images"},
			{"io.containerd.cri.v1", "runtime"},
			{"io.containerd.grpc.v1", "cri"},
		} {
			if st := e.pluginStatus(t, p[0], p[1]); st != "ok" {
				t.Errorf("plugin %s %s status %q with the rendered config", p[0], p[1], st)
			}
		}
		log := e.logText()
		for _, line := range unknownKeyLines(log) {
			t.Errorf("containerd ignored a key of the rendered config: %s", line)
		}
		// Registry credentials: under the images plugin, next to
		// config_path, and known to 2.x (no unknown-key line above).
		wantRegistryAuth(t, e.configDump(t), "io.containerd.cri.v1.images")
		for _, line := range strings.Split(log, "\n") {
			// No conflist in conf_dir is expected here (network: none).
			if strings.Contains(line, "level=error") && !strings.Contains(line, "failed to load cni during init") {
				t.Errorf("containerd logged an error with the rendered config: %s", line)
			}
		}
		if t.Failed() {
			r := e.ctr(t, "plugins", "ls")
			t.Logf("ctr plugins ls:\n%s%s\ncontainerd log:\n%s", r.stdout, r.stderr, log)
		}
	})

	// The same check must fail on a misplaced key: sandbox_image is a
	// version 2 key of the grpc.v1.cri table; in version 3 it belongs under
	// cri.v1.images as pinned_images.sandbox.
	t.Run("misplaced key is reported", func(t *testing.T) {
		e := run(t, `[plugins."io.containerd.cri.v1.runtime"]
sandbox_image = "x"
`)
		var lines []string
		// The warning is logged while the plugin loads; give a slow start
		// a moment before concluding it is missing.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			lines = unknownKeyLines(e.logText())
			if len(lines) > 0 || time.Now().After(deadline) {
				break
			}
		}
		found := false
		for _, line := range lines {
			if strings.Contains(line, "sandbox_image") && strings.Contains(line, "io.containerd.cri.v1.runtime") {
				found = true
				t.Logf("reported as expected: %s", line)
			}
		}
		if !found {
			t.Errorf("containerd did not report the misplaced sandbox_image key (unknown-key lines: %q)\nlog:\n%s", lines, e.logText())
		}
	})
}

// indentLines prefixes every non-empty line of s.
func indentLines(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "")
}
