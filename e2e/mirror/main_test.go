package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nodeprov/nodeprov/e2e/artifacts"
	"github.com/nodeprov/nodeprov/spec"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRun: run serves the artifacts the spec it writes expands to, logs
// the requests, and on cancellation removes the ready file and its
// temporary tree.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	src, err := artifacts.RandomSources(filepath.Join(dir, "src"), 3, 16<<10)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	os.Mkdir(tmp, 0o755)
	t.Setenv("TMPDIR", tmp)
	var log, out syncBuffer
	c := config{
		addr: "127.0.0.1:0", ready: filepath.Join(dir, "out/url"),
		specIn: "../../examples/demo-node.yaml", specOut: filepath.Join(dir, "out/node.yaml"),
		level: 1, sources: src, log: &log, out: &out,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, c, started) }()
	var url string
	select {
	case url = <-started:
	case err := <-done:
		t.Fatalf("run: %v\n%s", err, log.String())
	case <-time.After(30 * time.Second):
		t.Fatal("not ready after 30s")
	}
	if b, err := os.ReadFile(c.ready); err != nil || string(b) != url+"\n" {
		t.Errorf("ready file %q (%v), want %s", b, err, url)
	}
	if trees, _ := os.ReadDir(tmp); len(trees) != 1 {
		t.Errorf("temporary directories: %v", trees)
	}

	src2, err := os.ReadFile(c.specOut)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := spec.Load("node.yaml", src2)
	if err != nil {
		t.Fatal(err)
	}
	expanded, err := spec.Expand(doc.Spec, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range expanded {
		resp, err := http.Get(a.URL)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		io.Copy(h, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(a.URL, url+"/") {
			t.Errorf("GET %s: %d", a.URL, resp.StatusCode)
		}
		if f, ok := map[string]string{artifacts.Runc: src.Runc, artifacts.Runsc: src.Runsc}[a.Name]; ok {
			want, _ := os.ReadFile(f)
			if sum := sha256.Sum256(want); hex.EncodeToString(h.Sum(nil)) != hex.EncodeToString(sum[:]) {
				t.Errorf("%s: served bytes are not the source's", a.Name)
			}
		}
	}
	for _, w := range []string{"built 4 artifacts", "serving them at " + url + "/", "wrote " + c.specOut} {
		if !strings.Contains(log.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, log.String())
		}
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A request is logged once its response is complete, which the client
	// may see first; after the shutdown every request is logged.
	if n := strings.Count(out.String(), "GET /"); n != len(expanded) {
		t.Errorf("request log has %d GETs, want %d:\n%s", n, len(expanded), out.String())
	}
	if _, err := os.Stat(c.ready); !os.IsNotExist(err) {
		t.Errorf("ready file left: %v", err)
	}
	if trees, _ := os.ReadDir(tmp); len(trees) != 0 {
		t.Errorf("temporary tree left: %v", trees)
	}
	if !strings.Contains(log.String(), "stopped after") {
		t.Errorf("log lacks the stop line:\n%s", log.String())
	}
}

func TestRunRefusesNonLoopback(t *testing.T) {
	src, err := artifacts.RandomSources(t.TempDir(), 4, 1024)
	if err != nil {
		t.Fatal(err)
	}
	c := config{addr: "0.0.0.0:0", dir: t.TempDir(), level: 1, sources: src, log: io.Discard, out: io.Discard}
	if err := run(context.Background(), c, nil); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("run on 0.0.0.0: %v", err)
	}
}

// TestCommandStopsOnSIGTERM runs the command as make demo does, from
// Debian's binaries: it writes the ready file, serves, and a SIGTERM stops
// it cleanly, removing the ready file and its temporary directory.
func TestCommandStopsOnSIGTERM(t *testing.T) {
	if _, err := artifacts.DebianSources(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Debian binaries (make test installs them; CI must not skip this): %v", err)
		}
		t.Skipf("Debian binaries: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "mirror")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	tmp := filepath.Join(dir, "tmp")
	os.Mkdir(tmp, 0o755)
	ready := filepath.Join(dir, "url")
	cmd := exec.Command(bin, "-gzip", "1", "-ready", ready, "-spec", "../../examples/demo-node.yaml", "-spec-out", filepath.Join(dir, "node.yaml"))
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(60 * time.Second)
	var url []byte
	for ; time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if b, err := os.ReadFile(ready); err == nil {
			url = bytes.TrimSpace(b)
			break
		}
	}
	if url == nil {
		t.Fatalf("no ready file after 60s:\n%s", log.String())
	}
	resp, err := http.Get(string(url) + "/" + artifacts.RuncDir + "/runc.sha256sum")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(body, []byte("BEGIN PGP SIGNED MESSAGE")) {
		t.Errorf("runc.sha256sum: %s", body)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, log.String())
	}
	if _, err := os.Stat(ready); !os.IsNotExist(err) {
		t.Errorf("ready file left: %v", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("temporary directory left: %v", left)
	}
	if _, err := http.Get(string(url) + "/"); err == nil {
		t.Error("still serving after SIGTERM")
	}
}
