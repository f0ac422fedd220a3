package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	art "github.com/nodeprov/nodeprov/e2e/artifacts"
)

// Packer and the Amazon plugin the example template needs, built from Go
// modules (only the module proxy is reachable from CI, not HashiCorp's
// release downloads). Later Packer releases are not on the proxy here.
const (
	packerModule        = "github.com/hashicorp/packer"
	packerVersion       = "v1.11.2"
	amazonPluginModule  = "github.com/hashicorp/packer-plugin-amazon"
	amazonPluginVersion = "v1.3.2"
	amazonPluginSource  = "github.com/hashicorp/amazon"
)

// packerTools returns packer and a plugin directory (for
// PACKER_PLUGIN_PATH) holding the Amazon plugin. Like containerd 2.x they
// are built once into the cache that survives between runs (e2eCacheDir),
// under a lock, and renamed into place only complete. A failed build fails
// the test.
func packerTools(t *testing.T) (packer, plugins string) {
	t.Helper()
	name := fmt.Sprintf("packer-%s-amazon-%s", strings.TrimPrefix(packerVersion, "v"), strings.TrimPrefix(amazonPluginVersion, "v"))
	dir := cachedBuild(t, name, packerUsable, buildPacker)
	return filepath.Join(dir, "packer"), filepath.Join(dir, "plugins")
}

// packerEnv keeps packer away from the caller's configuration, plugins,
// cache and HashiCorp's update check.
func packerEnv(plugins, scratch string) []string {
	return append(os.Environ(), "PACKER_PLUGIN_PATH="+plugins, "PACKER_CONFIG_DIR="+filepath.Join(scratch, "config"),
		"PACKER_CACHE_DIR="+filepath.Join(scratch, "cache"), "CHECKPOINT_DISABLE=1", "PACKER_NO_COLOR=1")
}

// packerUsable says whether dir holds the expected packer and plugin.
func packerUsable(dir string) error {
	out, err := exec.Command(filepath.Join(dir, "packer"), "version").Output()
	if err != nil || !strings.Contains(string(out), "Packer "+packerVersion) {
		return fmt.Errorf("packer version: %q %v", out, err)
	}
	bins, _ := filepath.Glob(filepath.Join(dir, "plugins", amazonPluginSource, "packer-plugin-amazon_"+amazonPluginVersion+"_*"))
	for _, b := range bins {
		if strings.HasSuffix(b, "_SHA256SUM") {
			continue
		}
		var d struct {
			Version  string   `json:"version"`
			Builders []string `json:"builders"`
		}
		out, err := exec.Command(b, "describe").Output()
		if err != nil || json.Unmarshal(out, &d) != nil || "v"+d.Version != amazonPluginVersion {
			return fmt.Errorf("%s describe: %q %v", b, out, err)
		}
		return nil
	}
	return fmt.Errorf("no amazon plugin %s in %s", amazonPluginVersion, dir)
}

// buildPacker builds packer and the plugin, each in its own scratch module
// (`go install pkg@version` refuses modules with replace directives, and
// both have one), applying the replace directives of the module's own
// go.mod, then installs the plugin the way `packer init` would.
func buildPacker(ctx context.Context, out string, log io.Writer) error {
	if err := art.BuildModuleMain(ctx, filepath.Join(out, "src-packer"), packerModule, packerVersion, "", filepath.Join(out, "packer"), log); err != nil {
		return err
	}
	plugin := filepath.Join(out, "src-plugin", "packer-plugin-amazon")
	if err := art.BuildModuleMain(ctx, filepath.Join(out, "src-plugin"), amazonPluginModule, amazonPluginVersion, "", plugin, log); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(out, "packer"), "plugins", "install", "--path", plugin, amazonPluginSource)
	cmd.Env = packerEnv(filepath.Join(out, "plugins"), out)
	cmd.Stdout, cmd.Stderr = log, log
	fmt.Fprintf(log, "$ packer plugins install --path %s %s\n", plugin, amazonPluginSource)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("packer plugins install: %w", err)
	}
	for _, d := range []string{"src-packer", "src-plugin", "config", "cache"} {
		os.RemoveAll(filepath.Join(out, d))
	}
	return nil
}

// TestPackerValidate runs `packer validate` (not only -syntax-only: the
// Amazon plugin decodes and checks the source's settings) on the example
// template for both architectures, and shows that it rejects what it
// should.
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
	validate := func(dir string, vars ...string) result {
		args := []string{"validate", "-var", "nodeprov_binary=" + nodeprov, "-var", "spec=" + spec, "-var", "lock=" + lock}
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

	for _, arch := range []string{"amd64", "arm64"} {
		if r := validate(template, "arch="+arch); r.code != 0 || !strings.Contains(r.stdout, "The configuration is valid.") {
			t.Errorf("packer validate -var arch=%s:\n%s", arch, r)
		}
	}
	if r := runCmd(t, "", packer, "fmt", "-check", "-diff", template); r.code != 0 {
		t.Errorf("packer fmt -check: the template is not formatted:\n%s", r)
	}

	// What validate must reject: an unknown architecture, a missing lock
	// file, and a setting the Amazon builder does not have (only a real
	// plugin catches that; -syntax-only would not).
	if r := validate(template, "arch=riscv64"); r.code == 0 || !strings.Contains(r.stdout+r.stderr, "must be amd64 or arm64") {
		t.Errorf("arch=riscv64 accepted:\n%s", r)
	}
	if r := validate(template, "lock="+filepath.Join(scratch, "missing.lock")); r.code == 0 {
		t.Errorf("a missing lock file accepted:\n%s", r)
	}
	src, err := os.ReadFile(filepath.Join(template, "node.pkr.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(scratch, "broken")
	os.Mkdir(broken, 0o755)
	os.WriteFile(filepath.Join(broken, "node.pkr.hcl"), bytes.Replace(src, []byte("  ssh_username  = "), []byte("  ssh_usrname   = "), 1), 0o644)
	if r := validate(broken); r.code == 0 || !strings.Contains(r.stdout+r.stderr, "ssh_usrname") {
		t.Errorf("a misspelt builder setting accepted:\n%s", r)
	}
}
