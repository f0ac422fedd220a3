package userdata

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeNodeprov stands in for the binary: it records its arguments and
// prints a report.
const fakeNodeprov = `#!/bin/sh
printf '%s\n' "$@" > "$FAKE_ARGS"
echo '{"ok":true}'
exit "${FAKE_EXIT:-0}"
`

// scriptEnv runs the runcmd of generated user data with /bin/sh the way
// cloud-init's scripts-user module does (runcmd entries written into one
// script), with the machine paths moved into a temporary directory.
type scriptEnv struct {
	t                *testing.T
	dir, bin, spec   string
	report, argsFile string
	srv              *httptest.Server
	requests         atomic.Int32
}

func newScriptEnv(t *testing.T) *scriptEnv {
	t.Helper()
	dir := t.TempDir()
	e := &scriptEnv{t: t, dir: dir,
		bin:      filepath.Join(dir, "usr/local/bin/nodeprov"),
		spec:     filepath.Join(dir, "etc/nodeprov/node.yaml"),
		report:   filepath.Join(dir, "var/lib/nodeprov/cloud-init-report.json"),
		argsFile: filepath.Join(dir, "args")}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.requests.Add(1)
		if r.URL.Path != "/nodeprov" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(fakeNodeprov))
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func sha256Of(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// script renders user data for o and returns its runcmd as a shell
// script, with the machine paths replaced by paths under e.dir and extra
// runcmd lines appended (as another part's runcmd would be).
func (e *scriptEnv) script(o Options, extra ...string) string {
	t := e.t
	t.Helper()
	o.Spec = []byte("apiVersion: nodeprov/v1alpha1\nkind: Node\n")
	o.BinaryPath = e.bin
	doc := parseDoc(t, generate(t, o).Data)
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	for _, c := range append(doc.Runcmd, toAny(extra)...) {
		s, ok := c.(string)
		if !ok {
			t.Fatalf("runcmd entry %v is not a string", c)
		}
		b.WriteString(s + "\n")
	}
	s := strings.ReplaceAll(b.String(), SpecPath, e.spec)
	s = strings.ReplaceAll(s, "/var/lib/nodeprov", filepath.Dir(e.report))
	marked := strings.ReplaceAll(s, e.dir, "<dir>")
	for _, p := range []string{"/etc/nodeprov", "/var/lib/nodeprov", "/usr/local/bin"} {
		if strings.Count(marked, p) != strings.Count(marked, "<dir>"+p) {
			t.Fatalf("machine path %s left in the script under test:\n%s", p, s)
		}
	}
	return s
}

func toAny(ss []string) []any {
	var out []any
	for _, s := range ss {
		out = append(out, s)
	}
	return out
}

type scriptResult struct {
	code           int
	stdout, stderr string
}

// run runs the script with PATH limited to path (the tools the script
// may use) and FAKE_EXIT as the fake nodeprov's exit code.
func (e *scriptEnv) run(script, path string, fakeExit int) scriptResult {
	t := e.t
	t.Helper()
	f := filepath.Join(e.dir, "runcmd")
	if err := os.WriteFile(f, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", f)
	cmd.Env = []string{"PATH=" + path, "FAKE_ARGS=" + e.argsFile, "FAKE_EXIT=" + string(rune('0'+fakeExit)), "HOME=" + e.dir}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("the script hung:\n%s", errb.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return scriptResult{code, out.String(), errb.String()}
}

// tools makes a PATH directory with only the commands the script needs
// and the given downloader.
func tools(t *testing.T, downloader string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"sha256sum", "mkdir", "mktemp", "chmod", "mv", "rm", downloader} {
		p, err := exec.LookPath(name)
		if name == "python3" {
			if _, err2 := os.Stat("/usr/bin/python3"); err2 == nil {
				p, err = "/usr/bin/python3", nil // not a pyenv shim that needs a full PATH
			}
		}
		if err != nil {
			if name == downloader {
				t.Skipf("%s is not installed", name)
			}
			t.Fatal(err)
		}
		if err := os.Symlink(p, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// leftovers lists files next to the binary other than the binary itself.
func (e *scriptEnv) leftovers() []string {
	ents, _ := os.ReadDir(filepath.Dir(e.bin))
	var out []string
	for _, de := range ents {
		if de.Name() != filepath.Base(e.bin) {
			out = append(out, de.Name())
		}
	}
	return out
}

func (e *scriptEnv) checkApplied(r scriptResult) {
	t := e.t
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	st, err := os.Stat(e.bin)
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("installed binary: %v, mode %v", err, st)
	}
	if got, _ := os.ReadFile(e.bin); string(got) != fakeNodeprov {
		t.Error("installed binary is not the served one")
	}
	args, _ := os.ReadFile(e.argsFile)
	if want := "apply\n--no-block\n-o\njson\n" + e.spec + "\n"; string(args) != want {
		t.Errorf("nodeprov ran with %q, want %q", args, want)
	}
	rep, err := os.ReadFile(e.report)
	if err != nil || string(rep) != "{\"ok\":true}\n" {
		t.Errorf("report %q: %v", rep, err)
	}
	if st, err := os.Stat(e.report); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("report mode %v: %v", st.Mode().Perm(), err)
	}
	if l := e.leftovers(); len(l) > 0 {
		t.Errorf("files left next to the binary: %v", l)
	}
}

// TestScriptInstallsAndApplies runs the real runcmd with each downloader
// the script knows: curl, wget, and python3 (always there with cloud-init).
func TestScriptInstallsAndApplies(t *testing.T) {
	for _, dl := range []string{"curl", "wget", "python3"} {
		t.Run(dl, func(t *testing.T) {
			e := newScriptEnv(t)
			path := tools(t, dl)
			s := e.script(Options{BinaryURL: e.srv.URL + "/nodeprov", BinarySHA256: sha256Of([]byte(fakeNodeprov))})
			e.checkApplied(e.run(s, path, 0))
			if n := e.requests.Load(); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
		})
	}
}

func TestScriptFailures(t *testing.T) {
	good := sha256Of([]byte(fakeNodeprov))
	t.Run("digest mismatch", func(t *testing.T) {
		e := newScriptEnv(t)
		s := e.script(Options{BinaryURL: e.srv.URL + "/nodeprov", BinarySHA256: sha256Of([]byte("something else"))})
		r := e.run(s, tools(t, "curl"), 0)
		if r.code != 1 || !strings.Contains(r.stderr, "does not have sha256") || !strings.Contains(r.stderr, "FAILED") {
			t.Errorf("exit %d\n%s", r.code, r.stderr)
		}
		if _, err := os.Stat(e.bin); err == nil {
			t.Error("a binary with the wrong digest was installed")
		}
		if _, err := os.Stat(e.argsFile); err == nil {
			t.Error("nodeprov ran")
		}
		if l := e.leftovers(); len(l) > 0 {
			t.Errorf("files left next to the binary: %v", l)
		}
	})
	t.Run("download error", func(t *testing.T) {
		for _, dl := range []string{"curl", "wget", "python3"} {
			t.Run(dl, func(t *testing.T) {
				e := newScriptEnv(t)
				s := e.script(Options{BinaryURL: e.srv.URL + "/missing", BinarySHA256: good})
				r := e.run(s, tools(t, dl), 0)
				if r.code != 1 || !strings.Contains(r.stderr, "downloading "+e.srv.URL+"/missing failed") {
					t.Errorf("exit %d\n%s", r.code, r.stderr)
				}
				if l := e.leftovers(); len(l) > 0 {
					t.Errorf("files left next to the binary: %v", l)
				}
			})
		}
	})
	t.Run("apply fails", func(t *testing.T) {
		e := newScriptEnv(t)
		// Another part's runcmd after this one must not hide the failure.
		s := e.script(Options{BinaryURL: e.srv.URL + "/nodeprov", BinarySHA256: good}, "echo another part", "true")
		r := e.run(s, tools(t, "curl"), 2)
		if r.code != 2 || !strings.Contains(r.stderr, "apply failed with exit code 2; report: "+e.report) {
			t.Errorf("exit %d\n%s", r.code, r.stderr)
		}
		if strings.Contains(r.stdout, "another part") {
			t.Error("the script went on after the failure")
		}
		if rep, _ := os.ReadFile(e.report); string(rep) != "{\"ok\":true}\n" {
			t.Errorf("report %q", rep)
		}
	})
	t.Run("apply succeeds, other parts run", func(t *testing.T) {
		e := newScriptEnv(t)
		s := e.script(Options{BinaryURL: e.srv.URL + "/nodeprov", BinarySHA256: good}, "echo another part")
		r := e.run(s, tools(t, "curl"), 0)
		if r.code != 0 || !strings.Contains(r.stdout, "another part") {
			t.Errorf("exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
		}
	})
}

func TestScriptKeepsVerifiedBinary(t *testing.T) {
	good := sha256Of([]byte(fakeNodeprov))
	for _, c := range []struct {
		name     string
		existing string
		requests int32
	}{
		{"same digest: no download", fakeNodeprov, 0},
		{"other digest: replaced", "#!/bin/sh\nexit 9\n", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newScriptEnv(t)
			os.MkdirAll(filepath.Dir(e.bin), 0o755)
			if err := os.WriteFile(e.bin, []byte(c.existing), 0o755); err != nil {
				t.Fatal(err)
			}
			s := e.script(Options{BinaryURL: e.srv.URL + "/nodeprov", BinarySHA256: good})
			e.checkApplied(e.run(s, tools(t, "curl"), 0))
			if n := e.requests.Load(); n != c.requests {
				t.Errorf("%d requests, want %d", n, c.requests)
			}
		})
	}
}

func TestScriptBinaryOnImage(t *testing.T) {
	e := newScriptEnv(t)
	s := e.script(Options{})
	if strings.Contains(s, "curl") || strings.Contains(s, "sha256sum") {
		t.Error("a script for a binary on the image downloads")
	}
	r := e.run(s, tools(t, "curl"), 0)
	if r.code != 1 || !strings.Contains(r.stderr, e.bin+" is not on this image") {
		t.Errorf("missing binary: exit %d\n%s", r.code, r.stderr)
	}
	os.MkdirAll(filepath.Dir(e.bin), 0o755)
	if err := os.WriteFile(e.bin, []byte(fakeNodeprov), 0o755); err != nil {
		t.Fatal(err)
	}
	e.checkApplied(e.run(s, tools(t, "curl"), 0))
}

// TestShellQuote checks quoting through a real shell.
func TestShellQuote(t *testing.T) {
	for _, s := range []string{"plain/path-1.2_x", "a b", "it's", "$(reboot)", "`id`", "a'b'c", "x;y&z|w", "\\n", "é"} {
		out, err := exec.Command("/bin/sh", "-c", "printf %s "+shellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("shellQuote(%q) = %s: sh printed %q (%v)", s, shellQuote(s), out, err)
		}
	}
}
