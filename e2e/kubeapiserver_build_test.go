package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// kubeVersion is the Kubernetes release whose kube-apiserver answers the
// fleet tests; its staging modules (k8s.io/api, k8s.io/apiserver, ...)
// are published as v0.<minor>.<patch>.
const kubeVersion = "v1.37.2"

// kubeAPIServerBinary returns kube-apiserver built from the k8s.io/kubernetes
// Go module at kubeVersion, built once into the e2e cache (cachedBuild). A
// failed build fails the test: the fleet checks are only proven against a
// real API server.
func kubeAPIServerBinary(t *testing.T) string {
	t.Helper()
	dir := cachedBuild(t, "kube-apiserver-"+strings.TrimPrefix(kubeVersion, "v"),
		kubeAPIServerUsable,
		func(ctx context.Context, out string, log io.Writer) error {
			return buildKubeAPIServer(ctx, kubeVersion, out, log)
		})
	return filepath.Join(dir, "kube-apiserver")
}

// kubeAPIServerUsable says whether the cached binary runs and is the
// expected release.
func kubeAPIServerUsable(dir string) error {
	out, err := exec.Command(filepath.Join(dir, "kube-apiserver"), "--version").Output()
	if err != nil {
		return fmt.Errorf("kube-apiserver --version: %v", err)
	}
	if !strings.Contains(string(out), kubeVersion) {
		return fmt.Errorf("kube-apiserver --version says %q, want %s", bytes.TrimSpace(out), kubeVersion)
	}
	return nil
}

// stagingReplace matches the replace lines of k8s.io/kubernetes's go.mod
// that point a staging module at its directory inside the repository.
var stagingReplace = regexp.MustCompile(`^\s*(k8s\.io/[a-z0-9-]+) => \./staging/src/`)

// buildKubeAPIServer builds kube-apiserver into out from a scratch module
// that requires k8s.io/kubernetes. Its go.mod requires the staging modules
// at v0.0.0 and replaces them with paths inside its own repository, which
// a dependent module cannot see: the scratch module replaces each of them
// with its published release instead (v1.X.Y ships them as v0.X.Y). The
// version is stamped the way the release build does, so --version names it.
func buildKubeAPIServer(ctx context.Context, version, out string, log io.Writer) error {
	src := filepath.Join(out, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(src)
	env := append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false")
	run := func(args ...string) ([]byte, error) {
		fmt.Fprintf(log, "$ %s\n", strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Dir, cmd.Env, cmd.Stderr = src, env, log
		b, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", strings.Join(args, " "), err)
		}
		return b, nil
	}
	if _, err := run("go", "mod", "init", "nodeprov.test/kubeapiserver"); err != nil {
		return err
	}
	info, err := run("go", "mod", "download", "-json", "k8s.io/kubernetes@"+version)
	if err != nil {
		return err
	}
	var mod struct{ GoMod, Error string }
	if err := json.Unmarshal(info, &mod); err != nil || mod.Error != "" {
		return fmt.Errorf("download k8s.io/kubernetes@%s: %v%s", version, err, mod.Error)
	}
	staging, err := stagingModules(mod.GoMod)
	if err != nil {
		return err
	}
	stagingVersion := "v0." + strings.TrimPrefix(version, "v1.")
	edit := []string{"go", "mod", "edit", "-require=k8s.io/kubernetes@" + version}
	for _, m := range staging {
		edit = append(edit, "-replace="+m+"="+m+"@"+stagingVersion)
	}
	main := `// Scratch module: keeps kube-apiserver's packages and their
// dependencies in go.mod and go.sum so that it can be built.
package main

import _ "k8s.io/kubernetes/cmd/kube-apiserver/app"

func main() {}
`
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(main), 0o644); err != nil {
		return err
	}
	ldflags := "-s -w -X k8s.io/component-base/version.gitVersion=" + version +
		" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=" + strings.Split(version, ".")[1]
	for _, step := range [][]string{
		edit,
		{"go", "mod", "tidy"},
		{"go", "build", "-trimpath", "-ldflags", ldflags, "-o", filepath.Join(out, "kube-apiserver"), "k8s.io/kubernetes/cmd/kube-apiserver"},
	} {
		if _, err := run(step...); err != nil {
			return err
		}
	}
	return nil
}

// stagingModules lists the modules a k8s.io/kubernetes go.mod replaces with
// its staging directories.
func stagingModules(goMod string) ([]string, error) {
	f, err := os.Open(goMod)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mods []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := stagingReplace.FindStringSubmatch(sc.Text()); m != nil {
			mods = append(mods, m[1])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("%s replaces no staging module: not a k8s.io/kubernetes go.mod?", goMod)
	}
	return mods, nil
}
