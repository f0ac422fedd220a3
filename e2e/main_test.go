// Package e2e runs the real nodeprov binary against sandbox roots and, for
// live kernel state, inside private network namespaces.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

var nodeprov string

func TestMain(m *testing.M) {
	code, err := setup(m)
	// The release artifacts are built once per test process and shared.
	if artifactsDir != nil {
		os.RemoveAll(artifactsDir.dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

// setup uses NODEPROV_BIN (set by make) or builds the binary once.
func setup(m *testing.M) (int, error) {
	if bin := os.Getenv("NODEPROV_BIN"); bin != "" {
		nodeprov = bin
		return m.Run(), nil
	}
	dir, err := os.MkdirTemp("", "nodeprov-e2e-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	nodeprov = filepath.Join(dir, "nodeprov")
	build := exec.Command("go", "build", "-o", nodeprov, "../cmd/nodeprov")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("go build: %v\n%s", err, out)
	}
	return m.Run(), nil
}

// result is one finished nodeprov invocation.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// nodeprovCommand is how every test starts the binary: with the test
// process's environment minus its proxy and TLS trust variables (so that
// no request can leave through a proxy the machine has, and only a CA the
// spec names is trusted), plus env.
func nodeprovCommand(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(nodeprov, args...)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR":
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// runNodeprov runs the binary to its end (nodeprovCommand) with stdin.
func runNodeprov(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return runNodeprovEnv(t, nil, stdin, args...)
}

// runNodeprovEnv is runNodeprov with extra environment variables.
func runNodeprovEnv(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	r, err := execNodeprov(env, stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// execNodeprov is runNodeprovEnv for any goroutine.
func execNodeprov(env []string, stdin string, args ...string) (result, error) {
	cmd := nodeprovCommand(env, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	return runCaptured(cmd)
}

// runCaptured runs cmd and returns its exit code and output.
func runCaptured(cmd *exec.Cmd) (result, error) {
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		return result{}, fmt.Errorf("run %s: %w", cmd.Path, err)
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}, nil
}

// runCmd runs another program to its end.
func runCmd(t *testing.T, stdin, name string, args ...string) result {
	t.Helper()
	cmd := exec.Command(name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	r, err := runCaptured(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// report mirrors the documented JSON report fields the tests read.
type report struct {
	ReportVersion int    `json:"reportVersion"`
	Command       string `json:"command"`
	OK            bool   `json:"ok"`
	Drift         bool   `json:"drift"`
	Changed       int    `json:"changed"`
	Live          bool   `json:"live"`
	Stages        []struct {
		Name    string `json:"name"`
		Actions []struct {
			Resource string `json:"resource"`
			Op       string `json:"op"`
			Status   string `json:"status"`
			Detail   string `json:"detail"`
			Diff     string `json:"diff"`
		} `json:"actions"`
	} `json:"stages"`
	Diagnostics []struct {
		File    string `json:"file"`
		Line    int    `json:"line"`
		Column  int    `json:"column"`
		Path    string `json:"path"`
		Message string `json:"message"`
	} `json:"diagnostics"`
	Error *struct {
		Stage, Resource, Message, Class string
	} `json:"error"`
}

func parseReport(t *testing.T, s string) report {
	t.Helper()
	var r report
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, s)
	}
	return r
}

func (r report) statuses() map[string]string {
	out := map[string]string{}
	for _, s := range r.Stages {
		for _, a := range s.Actions {
			out[a.Resource] = a.Status
		}
	}
	return out
}

// requireRoot stops a test that needs root (namespaces, chown). In CI the
// end-to-end tests must run, so there it fails instead of skipping.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 && runtime.GOOS == "linux" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this end-to-end test needs root on Linux, and CI must not skip it")
	}
	t.Skip("needs root on Linux (network namespaces, file ownership)")
}

func sandbox(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

func writeSpec(t *testing.T, src string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
