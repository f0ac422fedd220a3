package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	art "github.com/nodeprov/nodeprov/e2e/artifacts"
)

// Packer and the plugins the example templates need (Amazon for the cloud
// template, Docker for the one the e2e builds), built from Go modules: only
// the module proxy is reachable from CI, not HashiCorp's release downloads.
// Later Packer releases, and most other Docker plugin versions, are not on
// the proxy here.
const packerModule, packerVersion = "github.com/hashicorp/packer", "v1.11.2"

// packerPlugin is a Packer plugin built from its Go module.
type packerPlugin struct {
	name    string // amazon: the binary is packer-plugin-<name>
	module  string
	version string
	source  string // the required_plugins source, for packer plugins install
	// xflags are -X link flags of upstream's release build: docker's tag
	// says VersionPrerelease "dev" in the source, and a plugin reporting
	// 1.1.2-dev does not satisfy a template's ">= 1.1.0".
	xflags []string
}

var packerPlugins = []packerPlugin{
	{"amazon", "github.com/hashicorp/packer-plugin-amazon", "v1.3.2", "github.com/hashicorp/amazon", nil},
	{"docker", "github.com/hashicorp/packer-plugin-docker", "v1.1.2", "github.com/hashicorp/docker",
		[]string{"github.com/hashicorp/packer-plugin-docker/version.VersionPrerelease="}},
}

// packerTools returns packer and a plugin directory (for
// PACKER_PLUGIN_PATH) holding the plugins. Like containerd 2.x they are
// built once into the cache that survives between runs (e2eCacheDir),
// under a lock, and renamed into place only complete. The cache entry's
// name carries every version, so an entry built with other plugins (the
// Amazon plugin alone, before the docker template) is not used. A failed
// build fails the test.
func packerTools(t *testing.T) (packer, plugins string) {
	t.Helper()
	name := "packer-" + strings.TrimPrefix(packerVersion, "v")
	for _, p := range packerPlugins {
		name += "-" + p.name + "-" + strings.TrimPrefix(p.version, "v")
	}
	// Entries of other versions are left alone: a test process of another
	// checkout may be running their packer right now.
	dir := cachedBuild(t, name, packerUsable, buildPacker)
	return filepath.Join(dir, "packer"), filepath.Join(dir, "plugins")
}

// packerEnv keeps packer away from the caller's configuration, plugins,
// cache and HashiCorp's update check.
func packerEnv(plugins, scratch string) []string {
	return append(os.Environ(), "PACKER_PLUGIN_PATH="+plugins, "PACKER_CONFIG_DIR="+filepath.Join(scratch, "config"),
		"PACKER_CACHE_DIR="+filepath.Join(scratch, "cache"), "CHECKPOINT_DISABLE=1", "PACKER_NO_COLOR=1")
}

// packerUsable says whether dir holds the expected packer and plugins.
func packerUsable(dir string) error {
	out, err := exec.Command(filepath.Join(dir, "packer"), "version").Output()
	if err != nil || !strings.Contains(string(out), "Packer "+packerVersion) {
		return fmt.Errorf("packer version: %q %v", out, err)
	}
	for _, p := range packerPlugins {
		if err := pluginUsable(dir, p); err != nil {
			return err
		}
	}
	return nil
}

// pluginUsable says whether dir's plugin directory holds p, installed and
// answering describe with its version.
func pluginUsable(dir string, p packerPlugin) error {
	bins, _ := filepath.Glob(filepath.Join(dir, "plugins", p.source, "packer-plugin-"+p.name+"_"+p.version+"_*"))
	for _, b := range bins {
		if strings.HasSuffix(b, "_SHA256SUM") {
			continue
		}
		var d struct {
			Version  string   `json:"version"`
			Builders []string `json:"builders"`
		}
		out, err := exec.Command(b, "describe").Output()
		if err != nil || json.Unmarshal(out, &d) != nil || "v"+d.Version != p.version {
			return fmt.Errorf("%s describe: %q %v", b, out, err)
		}
		return nil
	}
	return fmt.Errorf("no %s plugin %s in %s", p.name, p.version, dir)
}

// buildPacker builds packer and each plugin in its own scratch module
// (`go install pkg@version` refuses modules with replace directives, and
// they have some), applying the replace directives of the module's own
// go.mod, then installs the plugins the way `packer init` would. The log
// says how long each build took.
func buildPacker(ctx context.Context, out string, log io.Writer) error {
	start := time.Now()
	if err := art.BuildModuleMain(ctx, filepath.Join(out, "src-packer"), packerModule, packerVersion, "", filepath.Join(out, "packer"), log); err != nil {
		return err
	}
	fmt.Fprintf(log, "built packer %s in %s\n", packerVersion, time.Since(start).Round(time.Second))
	for _, p := range packerPlugins {
		start := time.Now()
		src := filepath.Join(out, "src-"+p.name)
		bin := filepath.Join(src, "packer-plugin-"+p.name)
		if err := art.BuildModuleMain(ctx, src, p.module, p.version, "", bin, log, p.xflags...); err != nil {
			return err
		}
		fmt.Fprintf(log, "built packer-plugin-%s %s in %s\n", p.name, p.version, time.Since(start).Round(time.Second))
		cmd := exec.CommandContext(ctx, filepath.Join(out, "packer"), "plugins", "install", "--path", bin, p.source)
		cmd.Env = packerEnv(filepath.Join(out, "plugins"), out)
		cmd.Stdout, cmd.Stderr = log, log
		fmt.Fprintf(log, "$ packer plugins install --path %s %s\n", bin, p.source)
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("packer plugins install %s: %w", p.source, err)
		}
		os.RemoveAll(src)
	}
	for _, d := range []string{"src-packer", "config", "cache"} {
		os.RemoveAll(filepath.Join(out, d))
	}
	return nil
}

// TestPackerValidate runs `packer validate` (not only -syntax-only: the
// plugins decode and check the sources' settings) on the cloud template
// for both architectures and on the docker-builder template, and shows
// that it rejects what it should.
func TestPackerValidate(t *testing.T) {
	packer, plugins := packerTools(t)
	scratch := t.TempDir()
	lock := filepath.Join(scratch, "nodeprov.lock")
	os.WriteFile(lock, []byte("https://example.com/a.tgz sha256:"+testBinarySHA+"\n"), 0o644)
	spec, err := filepath.Abs("../examples/k8s-worker.yaml")
	if err != nil {
		t.Fatal(err)
	}
	template, err := filepath.Abs("../examples/packer")
	if err != nil {
		t.Fatal(err)
	}
	docker := filepath.Join(template, "docker")
	validate := func(dir string, vars ...string) result {
		args := []string{"validate", "-var", "nodeprov_binary=" + nodeprov, "-var", "spec=" + spec}
		for _, v := range vars {
			args = append(args, "-var", v)
		}
		cmd := exec.Command(packer, append(args, ".")...)
		cmd.Dir = dir
		cmd.Env = packerEnv(plugins, scratch)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return result{code: code, stdout: out.String(), stderr: errb.String()}
	}

	// The cloud template also needs the lock.
	validateCloud := func(dir string, vars ...string) result {
		return validate(dir, append([]string{"lock=" + lock}, vars...)...)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		if r := validateCloud(template, "arch="+arch); r.code != 0 || !strings.Contains(r.stdout, "The configuration is valid.") {
			t.Errorf("packer validate -var arch=%s:\n%s", arch, r)
		}
	}
	if r := validate(docker); r.code != 0 || !strings.Contains(r.stdout, "The configuration is valid.") {
		t.Errorf("packer validate of the docker template:\n%s", r)
	}
	if r := runCmd(t, "", packer, "fmt", "-check", "-diff", "-recursive", template); r.code != 0 {
		t.Errorf("packer fmt -check: a template is not formatted:\n%s", r)
	}

	// What validate must reject: an unknown architecture, a missing lock
	// file, and a setting the builder does not have (only a real plugin
	// catches that; -syntax-only would not).
	if r := validateCloud(template, "arch=riscv64"); r.code == 0 || !strings.Contains(r.stdout+r.stderr, "must be amd64 or arm64") {
		t.Errorf("arch=riscv64 accepted:\n%s", r)
	}
	if r := validateCloud(template, "lock="+filepath.Join(scratch, "missing.lock")); r.code == 0 {
		t.Errorf("a missing lock file accepted:\n%s", r)
	}
	src, err := os.ReadFile(filepath.Join(template, "node.pkr.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(scratch, "broken")
	os.Mkdir(broken, 0o755)
	os.WriteFile(filepath.Join(broken, "node.pkr.hcl"), bytes.Replace(src, []byte("  ssh_username  = "), []byte("  ssh_usrname   = "), 1), 0o644)
	if r := validateCloud(broken); r.code == 0 || !strings.Contains(r.stdout+r.stderr, "ssh_usrname") {
		t.Errorf("a misspelt builder setting accepted:\n%s", r)
	}
	src, err = os.ReadFile(filepath.Join(docker, "node.pkr.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	brokenDocker := filepath.Join(scratch, "broken-docker")
	os.Mkdir(brokenDocker, 0o755)
	os.WriteFile(filepath.Join(brokenDocker, "node.pkr.hcl"), bytes.Replace(src, []byte("  export_path = "), []byte("  export_pth  = "), 1), 0o644)
	if r := validate(brokenDocker); r.code == 0 || !strings.Contains(r.stdout+r.stderr, "export_pth") {
		t.Errorf("a misspelt docker builder setting accepted:\n%s", r)
	}
}

// TestPackerDockerBuild is the golden-image flow built by Packer: `packer
// build` of the docker-builder example template, in a container of the
// test's own dockerd whose base image is the Debian node root imported,
// runs `nodeprov apply --image` and `nodeprov seal` on the container's
// root with the spec's artifacts from the test's mirror; the exported root
// filesystem boots twice, as two clones, each provisioning itself on its
// first boot with its own machine-id.
func TestPackerDockerBuild(t *testing.T) {
	packer, plugins := packerTools(t)
	a := releaseArtifacts(t)
	// The build container runs with --network host: this namespace, where
	// the mirror listens on loopback, as the clones later find it in
	// theirs.
	ns := newNetns(t)
	url := a.serveIn(t, ns, "127.0.0.1:0", nil)
	d := startDockerd(t, ns)
	tarball := nodeRootTarball(t)
	b, err := exec.Command("tar", "-xOf", tarball, "./etc/machine-id").Output()
	baked := strings.TrimSpace(string(b))
	if err != nil || !validMachineID.MatchString(baked) {
		t.Fatalf("the base root should carry a baked machine-id, has %q (%v)", b, err)
	}
	const base = "nodeprov-e2e-base:bookworm"
	start := time.Now()
	if r := d.docker(t, "import", tarball, base); r.code != 0 {
		t.Fatalf("docker import of the node root:\n%s", r)
	}
	t.Logf("docker import of %s in %s", tarball, time.Since(start).Round(10*time.Millisecond))
	d.checkConfined(t, base)

	scratch := t.TempDir()
	template, err := filepath.Abs("../examples/packer/docker")
	if err != nil {
		t.Fatal(err)
	}
	output := filepath.Join(scratch, "node-rootfs.tar")
	reports := filepath.Join(scratch, "reports")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, packer, "build",
		"-var", "base_image="+base,
		"-var", "nodeprov_binary="+nodeprov,
		"-var", "spec="+writeSpec(t, nodeSpec(a, url, nodeSpecOptions{})),
		"-var", "output="+output,
		"-var", "docker_path="+dockerCLI,
		"-var", "report_dir="+reports,
		".")
	cmd.Dir = template
	cmd.Env = append(append(packerEnv(plugins, scratch), d.env()...), "TMPDIR="+scratch)
	// Packer dies with the test binary (the daemon does too).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start = time.Now()
	r, err := runCaptured(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if r.code != 0 {
		t.Fatalf("packer build:\n%s", r)
	}
	t.Logf("packer build in %s:\n%s", time.Since(start).Round(10*time.Millisecond), tail(r.stdout, 12))

	b, err = os.ReadFile(filepath.Join(reports, "apply-report.json"))
	if err != nil {
		t.Fatal(err)
	}
	rep := parseReport(t, string(b))
	st := rep.statuses()
	for res, want := range map[string]string{
		"enable nodeprov-firstboot.service": "changed",
		"enable containerd.service":         "changed",
		"start containerd.service":          "deferred",
	} {
		if st[res] != want {
			t.Errorf("apply --image in the build container: %s is %q, want %s", res, st[res], want)
		}
	}
	b, err = os.ReadFile(filepath.Join(reports, "seal-report.json"))
	var seal struct {
		Steps []struct{ Resource, Detail string }
	}
	if err != nil || json.Unmarshal(b, &seal) != nil {
		t.Fatalf("seal report: %s %v", b, err)
	}
	sealed := false
	for _, s := range seal.Steps {
		sealed = sealed || s.Resource == "machine-id /etc/machine-id" && strings.HasSuffix(s.Detail, "-> uninitialized")
	}
	if !sealed {
		t.Errorf("seal in the build container did not reset /etc/machine-id:\n%s", b)
	}

	// The artifact: the container's root filesystem, without Docker's
	// placeholders (the template's post-processor).
	image := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(image, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-C", image, "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xf", output).CombinedOutput(); err != nil {
		t.Fatalf("extract the exported image: %v\n%s", err, out)
	}
	for p, want := range map[string]string{
		"etc/machine-id": "uninitialized\n",
		"etc/hosts":      "127.0.0.1\tlocalhost\n",
	} {
		if b, err := os.ReadFile(filepath.Join(image, p)); err != nil || !strings.HasPrefix(string(b), want) {
			t.Errorf("the image's /%s is %q (%v), want it to start with %q", p, b, err, want)
		}
	}
	for _, p := range []string{".dockerenv", "packer-files", "etc/hostname", "etc/resolv.conf", "tmp/nodeprov-build", "var/cache/nodeprov"} {
		if _, err := os.Lstat(filepath.Join(image, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the image holds /%s (%v)", p, err)
		}
	}
	for _, p := range []string{"usr/local/bin/nodeprov", "etc/nodeprov/node.yaml", "etc/systemd/system/nodeprov-firstboot.service"} {
		if _, err := os.Stat(filepath.Join(image, p)); err != nil {
			t.Errorf("the image build did not install /%s: %v", p, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	// The clones boot where no cloud datasource answers (as the nodes of
	// the other golden-image tests do).
	if err := os.WriteFile(filepath.Join(image, "etc/cloud/cloud-init.disabled"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	bootGoldenClones(t, a, strings.TrimPrefix(url, "http://"), image, baked)
}
