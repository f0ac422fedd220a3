package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	art "github.com/nodeprov/nodeprov/e2e/artifacts"
)

// Kata's release, as the fixture stands for it.
const (
	kataVersion  = "3.32.0"
	kataAsset    = "kata-static-" + kataVersion + "-amd64.tar.zst"
	kataUpstream = "https://github.com/kata-containers/kata-containers/releases/download/" + kataVersion + "/" + kataAsset
)

// kataRelease serves the Kata fixture as the release directory upstream
// has, and returns its URL and the asset's sha256 (checked against the
// .sha256 file next to the fixture when there is one).
func kataRelease(t *testing.T) (baseURL, sha string) {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Fatalf("the Kata fixture is %s; this machine is %s", kataAsset, runtime.GOARCH)
	}
	src, sum, err := art.Fixture(kataAsset, kataUpstream)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rel := "kata-containers/releases/download/" + kataVersion
	if err := os.MkdirAll(filepath.Join(dir, rel), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := art.CopyFile(src, filepath.Join(dir, rel, kataAsset)); err != nil {
		t.Fatal(err)
	}
	srv, err := art.Serve(dir, art.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv.URL + "/" + rel, sum
}

// kvmOffer is what this machine offers Kata, found here independently of
// nodeprov: a /dev/kvm node, and hardware virtualization in /proc/cpuinfo.
func kvmOffer(t *testing.T) (devKVM, virtFlag bool) {
	t.Helper()
	_, err := os.Stat("/dev/kvm")
	cpuinfo, rerr := os.ReadFile("/proc/cpuinfo")
	if rerr != nil {
		t.Fatal(rerr)
	}
	for _, line := range strings.Split(string(cpuinfo), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
			for _, f := range strings.Fields(v) {
				virtFlag = virtFlag || f == "vmx" || f == "svm"
			}
		}
	}
	return err == nil, virtFlag
}

// kataReport is the part of a JSON report the test reads.
type kataReport struct {
	report
	Warnings []string `json:"warnings"`
}

func (r kataReport) detail(resource string) (string, bool) {
	for _, s := range r.Stages {
		for _, a := range s.Actions {
			if a.Resource == resource {
				return a.Detail, true
			}
		}
	}
	return "", false
}

// TestKata installs Kata Containers from its release-shaped artifact
// (../shared/fixtures/kata-static-3.32.0-amd64.tar.zst, served on
// loopback, pinned): a live apply to a sandbox root puts the shim,
// kata-runtime and the qemu configuration under /opt/kata, links the two
// binaries into /usr/local/bin, points containerd's kata handler at the
// configuration, runs the preflight Kata probes (ignored by the spec on a
// machine without KVM, their verdict still reported) and the installed
// kata-runtime check, whose verdict is in the report. Debian's containerd
// 1.6 (config version 2) and containerd 2.1 (version 3, built from the
// module) load the config: CRI ok, and config dump shows the kata runtime
// with its ConfigPath. A Kata pod runs only where kata-runtime check
// passes (KVM backed by hardware, hypervisor, guest kernel and image):
// the test says which it did and why.
func TestKata(t *testing.T) {
	requireRoot(t)
	baseURL, sha := kataRelease(t)
	devKVM, virtFlag := kvmOffer(t)
	t.Logf("this machine: /dev/kvm present %v, vmx/svm flag %v", devKVM, virtFlag)
	t.Run("containerd-1.6", func(t *testing.T) {
		kataNode(t, newContainerdEnv(t), 2, baseURL, sha, devKVM, virtFlag)
	})
	t.Run("containerd-2.1", func(t *testing.T) {
		containerd, ctr := containerd2Binaries(t, "v2.1.4")
		kataNode(t, newContainerd2Env(t, containerd, ctr), 3, baseURL, sha, devKVM, virtFlag)
	})
}

func kataNode(t *testing.T, e *containerdEnv, configVersion int, baseURL, sha string, devKVM, virtFlag bool) {
	root := sandbox(t)
	spec := writeSpec(t, fmt.Sprintf(`apiVersion: nodeprov/v1alpha1
kind: Node
metadata: {name: kata}
components:
  kata:
    version: %[1]s
    baseURL: %[2]s
    sha256: {amd64: %[3]s}
containerd:
  configVersion: "%[4]d"
  cgroupDriver: cgroupfs
  root: %[5]s
  state: %[6]s
  address: %[7]s
  runtimes:
    kata:
      type: io.containerd.kata.v2
      podAnnotations: ["io.katacontainers.*"]
  cni: {network: none, binDir: %[8]s/cni/bin, confDir: %[8]s/cni/net.d}
  patch:
    # Keep containerd's own directories in the test's; no conf.d imports.
    plugins:
      io.containerd.internal.v1.opt: {path: "%[8]s/opt"}
    imports: null
machineID: {policy: warn}
# Machines without KVM (this one) still get Kata installed; the probes
# report why its pods cannot start. The sandbox root is not a whole
# system (no mount binaries, no /etc/hosts) although the run is live.
preflight: {ignore: [kata, binary, network.localhost]}
`, kataVersion, baseURL, sha, configVersion, e.root, e.state, e.address, e.dir))

	r := runNodeprov(t, "", "apply", "--root", root, "--live", "yes", "-o", "json", spec)
	if r.code != 0 {
		t.Fatalf("apply:\n%s", r)
	}
	var rep kataReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, r.stdout)
	}

	// Installed: regular files under /opt/kata, links in /usr/local/bin,
	// nothing of the release's symlinks.
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{
		{"opt/kata/bin/containerd-shim-kata-v2", 0o755},
		{"opt/kata/bin/kata-runtime", 0o755},
		{"opt/kata/share/defaults/kata-containers/configuration-qemu.toml", 0o644},
	} {
		st, err := os.Lstat(filepath.Join(root, f.path))
		if err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != f.mode {
			t.Errorf("%s: %v %v, want a regular file %v", f.path, st.Mode(), err, f.mode)
		}
	}
	for _, b := range []string{"containerd-shim-kata-v2", "kata-runtime"} {
		if got, err := os.Readlink(filepath.Join(root, "usr/local/bin", b)); err != nil || got != "/opt/kata/bin/"+b {
			t.Errorf("/usr/local/bin/%s -> %q (%v), want -> /opt/kata/bin/%s", b, got, err, b)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "opt/kata/share/defaults/kata-containers/configuration.toml")); err == nil {
		t.Error("the release's configuration.toml symlink was installed")
	}
	// The links are absolute inside the root: run the file they name.
	out, err := exec.Command(filepath.Join(root, "opt/kata/bin/kata-runtime"), "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), kataVersion) {
		t.Errorf("installed kata-runtime --version: %v\n%s", err, out)
	}
	const configPath = "/opt/kata/share/defaults/kata-containers/configuration-qemu.toml"

	// The KVM probe's verdict, against what the machine offers.
	kvm, ok := rep.detail("probe kata.kvm")
	if !ok {
		t.Fatalf("no probe kata.kvm in the report:\n%s", r.stdout)
	}
	t.Logf("nodeprov's KVM probe: %s", kvm)
	usable := devKVM && virtFlag
	switch {
	case !devKVM && !strings.HasPrefix(kvm, "fail: KVM not usable: /dev/kvm does not exist"):
		t.Errorf("no /dev/kvm here, but the probe says %q", kvm)
	case devKVM && !virtFlag && !(strings.HasPrefix(kvm, "fail: KVM not usable:") && (strings.Contains(kvm, "no vmx or svm flag in /proc/cpuinfo") || strings.Contains(kvm, "KVM_CREATE_VM failed"))):
		t.Errorf("/dev/kvm without vmx/svm here, but the probe says %q", kvm)
	case usable && !strings.HasPrefix(kvm, "pass: KVM usable") && !strings.Contains(kvm, "KVM not usable: /dev/kvm exists but KVM_CREATE_VM failed"):
		t.Errorf("/dev/kvm with vmx/svm here, but the probe says %q", kvm)
	}
	if !usable && !strings.HasSuffix(kvm, "(ignored)") {
		t.Errorf("the failing probe is not marked ignored: %q", kvm)
	}
	if virt, _ := rep.detail("probe kata.cpu-virtualization"); strings.HasPrefix(virt, "pass") != virtFlag {
		t.Errorf("probe kata.cpu-virtualization says %q; vmx/svm here: %v", virt, virtFlag)
	}

	// kata-runtime check ran, with the handler's configuration, and its
	// verdict is in the report (a warning when it fails).
	check, ok := rep.detail("kata-runtime check kata")
	if !ok {
		t.Fatalf("no kata-runtime check in the report:\n%s", r.stdout)
	}
	t.Logf("kata-runtime check: %s", check)
	wantCmd := root + "/opt/kata/bin/kata-runtime --config " + root + configPath + " check --no-network-checks"
	switch {
	case strings.HasPrefix(check, "ok: "):
	case strings.HasPrefix(check, "failed: "+wantCmd+": exit status "):
		if !strings.Contains(strings.Join(rep.Warnings, "\n"), "kata-runtime check says this host cannot run Kata pods") {
			t.Errorf("the failed check is not a warning: %q", rep.Warnings)
		}
	default:
		t.Errorf("kata-runtime check verdict %q; want ok or failed from %s", check, wantCmd)
	}

	if r := runNodeprov(t, "", "apply", "--root", root, "--live", "yes", "-o", "json", spec); r.code != 0 || parseReport(t, r.stdout).Changed != 0 {
		t.Fatalf("second apply changed something:\n%s", r)
	}

	// containerd loads the config with the kata handler; CRI is ok.
	config := filepath.Join(root, "etc/containerd/config.toml")
	e.start(t, config)
	if st := e.pluginStatus(t, "io.containerd.grpc.v1", "cri"); st != "ok" {
		t.Fatalf("CRI plugin status %q\n%s", st, e.logText())
	}
	if configVersion >= 3 {
		for _, line := range unknownKeyLines(e.logText()) {
			t.Errorf("containerd ignored a key: %s", line)
		}
	}
	cri := "io.containerd.grpc.v1.cri"
	if configVersion >= 3 {
		cri = "io.containerd.cri.v1.runtime"
	}
	var loaded map[string]any
	if err := toml.Unmarshal([]byte(e.configDump(t)), &loaded); err != nil {
		t.Fatal(err)
	}
	kata := []string{"plugins", cri, "containerd", "runtimes", "kata"}
	if got := tomlPath(loaded, append(kata, "runtime_type")...); got != "io.containerd.kata.v2" {
		t.Errorf("config dump: kata runtime_type %v", got)
	}
	if got := tomlPath(loaded, append(kata, "options", "ConfigPath")...); got != configPath {
		t.Errorf("config dump: kata ConfigPath %v, want %s", got, configPath)
	}

	// A Kata pod needs what kata-runtime check accepts: KVM backed by the
	// CPU, the hypervisor, a guest kernel and image.
	if !strings.HasPrefix(check, "ok: ") {
		t.Logf("no Kata pod on this machine: KVM usable %v (probe: %s); kata-runtime check: %s", usable, kvm, check)
		return
	}
	kataPod(t, e, root)
}

// kataPod runs a container under the kata runtime from a busybox rootfs,
// through the containerd nodeprov configured, with the shim nodeprov
// linked first on PATH.
func kataPod(t *testing.T, e *containerdEnv, root string) {
	rootfs := filepath.Join(e.dir, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := art.CopyFile("/bin/busybox", filepath.Join(rootfs, "bin/busybox")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(rootfs, "bin/busybox"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(e.ctrBin, "--address", e.address, "run", "--rm", "--runtime", "io.containerd.kata.v2",
		"--rootfs", rootfs, "kata-e2e", "/bin/busybox", "uname", "-r")
	cmd.Env = append(os.Environ(), "PATH="+root+"/usr/local/bin:"+os.Getenv("PATH"))
	var buf strings.Builder
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		t.Fatalf("Kata container: %v\n%s\ncontainerd log:\n%s", err, buf.String(), tail(e.logText(), 30))
	}
	host, _ := exec.Command("uname", "-r").Output()
	t.Logf("a Kata container ran: guest kernel %s (host %s)", strings.TrimSpace(buf.String()), strings.TrimSpace(string(host)))
	if strings.TrimSpace(buf.String()) == strings.TrimSpace(string(host)) {
		t.Error("the Kata container reports the host's kernel: it did not run in a VM")
	}
}

// TestKataExample: examples/kata.yaml (validated and planned with every
// example by TestExamplesValidateAndPlan) expands to Kata's upstream
// asset with its pin, the files and the links; planned into an image
// root, its Kata probes and kata-runtime check are deferred to the live
// first boot.
func TestKataExample(t *testing.T) {
	const f = "../examples/kata.yaml"
	r := runNodeprov(t, "", "plan", "--expanded", "--arch", "amd64", "-o", "json", f)
	if r.code != 0 {
		t.Fatalf("plan --expanded: %s", r)
	}
	var exp struct {
		Artifacts []struct {
			Name, URL, SHA256 string
			Install           struct{ Files, Links map[string]string }
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &exp); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range exp.Artifacts {
		if a.Name != "kata" {
			continue
		}
		found = true
		if a.URL != kataUpstream || len(a.SHA256) != 64 {
			t.Errorf("kata artifact %s pinned %q", a.URL, a.SHA256)
		}
		if a.Install.Files["opt/kata/share/defaults/kata-containers/configuration-qemu.toml"] == "" || len(a.Install.Files) != 3 ||
			a.Install.Links["/usr/local/bin/containerd-shim-kata-v2"] != "/opt/kata/bin/containerd-shim-kata-v2" || len(a.Install.Links) != 2 {
			t.Errorf("kata installs %v and links %v", a.Install.Files, a.Install.Links)
		}
	}
	if !found {
		t.Fatalf("no kata artifact in %s", r.stdout)
	}
	r = runNodeprov(t, "", "plan", "--root", sandbox(t), "-o", "json", "--stages", "preflight,containerd", f)
	if r.code != 0 {
		t.Fatalf("plan: %s", r)
	}
	var rep kataReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	for _, res := range []string{"probe kata.kvm", "probe kata.cpu-virtualization", "probe kata.module.vhost_vsock", "kata-runtime check kata"} {
		if d, ok := rep.detail(res); !ok || !strings.HasPrefix(d, "deferred") && !strings.HasPrefix(d, "runs on a live apply") {
			t.Errorf("%s: %q (present %v), want it deferred offline", res, d, ok)
		}
	}
}
