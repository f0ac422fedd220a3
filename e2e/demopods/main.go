// Command demopods is `make demo-pods`: pods running through CRI on a node
// nodeprov provisioned, on this machine, in a few steps a newcomer can
// follow. It builds release-shaped containerd, runc, CNI and gVisor
// artifacts from Debian's packages and crictl from its Go module (once,
// cached like the tests' builds), serves them on loopback, and has
// nodeprov apply a node spec to a sandbox root. Then, in private mount,
// network and PID namespaces (everything it starts dies with them), it
// starts a registry with a busybox and a pause image, starts containerd
// with nodeprov's config, and with the crictl and /etc/crictl.yaml
// nodeprov installed pulls through the mirror and runs a runc pod with a
// container and a gVisor pod sandbox: what e2e TestPodsThroughCRI checks
// (see e2e/artifacts/pods.go).
//
// Run as root from the repository's top directory:
//
//	go run ./e2e/demopods -nodeprov bin/nodeprov -dir _demo-pods
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	art "github.com/nodeprov/nodeprov/e2e/artifacts"
)

func main() {
	nodeprov := flag.String("nodeprov", "bin/nodeprov", "nodeprov binary")
	dir := flag.String("dir", "_demo-pods", "work directory, recreated (the sandbox root is DIR/root)")
	cache := flag.String("cache", "/var/cache/nodeprov-e2e", "where crictl is built once (shared with make test)")
	flag.Parse()
	start := time.Now()
	if err := run(*nodeprov, *dir, *cache); err != nil {
		fmt.Fprintln(os.Stderr, "demo-pods:", err)
		os.Exit(1)
	}
	fmt.Printf("\ndemo-pods finished in %s\n", time.Since(start).Round(time.Second))
}

func step(format string, args ...any) { fmt.Printf("\n== "+format+"\n", args...) }

func run(nodeprov, dir, cache string) (err error) {
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root: containerd, mounts and network namespaces need it")
	}
	for _, tool := range []string{"docker-registry", "skopeo", "curl", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed (make demo-pods installs it as root)", tool)
		}
	}
	if nodeprov, err = filepath.Abs(nodeprov); err != nil {
		return err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	root, scratch := filepath.Join(dir, "root"), filepath.Join(dir, "work")
	for _, d := range []string{root, scratch} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}

	step("release-shaped artifacts from this machine's Debian binaries, served on loopback")
	tree, err := art.Build(filepath.Join(dir, "tree"), art.Options{})
	if err != nil {
		return err
	}
	srv, err := art.Serve(tree.Dir, art.ServerOptions{})
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Println("artifact server:", srv.URL)

	crictl, err := crictlBinary(cache)
	if err != nil {
		return err
	}
	rel, sha, err := art.PackCrictl(filepath.Join(dir, "crictl"), crictl)
	if err != nil {
		return err
	}
	crictlSrv, err := art.Serve(filepath.Join(dir, "crictl"), art.ServerOptions{})
	if err != nil {
		return err
	}
	defer crictlSrv.Close()

	node := art.PodNode{Root: root, Dir: scratch, ServerURL: srv.URL, Keyring: tree.Keyring,
		CrictlURL: crictlSrv.URL + "/" + rel, CrictlSHA: sha, ConfigVersion: 2}
	spec := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(spec, []byte(node.Spec()), 0o644); err != nil {
		return err
	}
	step("nodeprov apply: containerd, runc, runsc, CNI plugins and crictl installed and configured (spec: %s)", spec)
	if err := command(nodeprov, "apply", "--root", root, spec).Run(); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	if err := node.Prepare(); err != nil {
		return err
	}
	defer func() {
		for _, e := range node.RemoveCgroups() {
			fmt.Fprintln(os.Stderr, "demo-pods: cgroup left behind:", e)
		}
	}()
	for _, mp := range []string{"/etc/cni", "/etc/containerd"} {
		if _, err := os.Stat(mp); os.IsNotExist(err) {
			// A mount point for the namespaces' own; removed again after.
			if err := os.Mkdir(mp, 0o755); err != nil {
				return err
			}
			defer os.Remove(mp)
		}
	}
	script := node.Script(filepath.Join(root, "usr/local/bin/containerd"), nodeprov, spec)
	cmd := command("unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc", "--", "sh", "-c", script)
	cmd.Stdout = &stepWriter{w: os.Stdout}
	if err := cmd.Run(); err != nil {
		clog, _ := os.ReadFile(filepath.Join(scratch, "containerd.log"))
		return fmt.Errorf("pods: %w; containerd log (tail):\n%s", err, lastLines(string(clog), 20))
	}
	step("done: the namespaces are gone with everything they held; the root stays in %s", root)
	return nil
}

// crictlBinary returns crictl from the cache, building it once.
func crictlBinary(cache string) (string, error) {
	dir := filepath.Join(cache, "crictl-"+art.CrictlVersion)
	bin := filepath.Join(dir, "crictl")
	if out, err := exec.Command(bin, "--version").Output(); err == nil && strings.Contains(string(out), art.CrictlVersion) {
		return bin, nil
	}
	step("crictl %s from the sigs.k8s.io/cri-tools module (once, into %s)", art.CrictlVersion, dir)
	tmp, err := os.MkdirTemp(cache, "crictl-"+art.CrictlVersion+".tmp-")
	if err != nil {
		if err := os.MkdirAll(cache, 0o755); err != nil {
			return "", err
		}
		if tmp, err = os.MkdirTemp(cache, "crictl-"+art.CrictlVersion+".tmp-"); err != nil {
			return "", err
		}
	}
	defer os.RemoveAll(tmp)
	if err := art.BuildCrictl(context.Background(), tmp, io.Discard); err != nil {
		return "", fmt.Errorf("build crictl: %w", err)
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return bin, nil
}

func command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd
}

// stepWriter prints the script's "== " lines as steps, the others
// indented.
type stepWriter struct {
	w    io.Writer
	line []byte
}

func (s *stepWriter) Write(p []byte) (int, error) {
	for _, b := range p {
		if b != '\n' {
			s.line = append(s.line, b)
			continue
		}
		l := string(s.line)
		s.line = s.line[:0]
		if strings.HasPrefix(l, "== ") {
			fmt.Fprintf(s.w, "\n%s\n", l)
		} else {
			fmt.Fprintf(s.w, "  %s\n", l)
		}
	}
	return len(p), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
