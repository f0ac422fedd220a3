package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// The user data of `nodeprov cloud-init` checked by a real cloud-init
// (Debian 12's package, installed by make deps): its schema validator, and
// its own user-data processing, part merging and write_files module.

// requireCloudInit returns the cloud-init command. In CI it must be there.
func requireCloudInit(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("cloud-init")
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatal("cloud-init is not installed, and CI must not skip this test (make deps installs it)")
	}
	t.Skip("cloud-init is not installed (apt-get install --no-install-recommends cloud-init)")
	return ""
}

// cloudInitPython is the interpreter cloud-init runs on (its script's
// #! line), which can import the cloudinit package.
func cloudInitPython(t *testing.T, ci string) string {
	t.Helper()
	f, err := os.Open(ci)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	py, ok := strings.CutPrefix(strings.TrimSpace(line), "#!")
	if !ok || !strings.Contains(py, "python") {
		t.Fatalf("%s does not start with a python #! line: %q", ci, line)
	}
	return strings.Fields(py)[0]
}

var validSchema = regexp.MustCompile(`(?m)^Valid (cloud-config|schema)\b`)

// schemaCheck runs `cloud-init schema -c file`. cloud-init 22.4 (Debian 12)
// prints "Valid cloud-config: FILE", later releases "Valid schema FILE".
func schemaCheck(t *testing.T, ci, file string) (bool, string) {
	t.Helper()
	r := runCmd(t, "", ci, "schema", "-c", file)
	out := r.stdout + r.stderr
	return r.code == 0 && validSchema.MatchString(out), out
}

// cloudConfigPart returns the body of the only text/cloud-config part of a
// multipart message.
func cloudConfigPart(t *testing.T, data []byte) []byte {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" {
		t.Fatalf("Content-Type %q (%v)", msg.Header.Get("Content-Type"), err)
	}
	var body []byte
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); ct != "text/cloud-config" {
			t.Fatalf("unexpected part %q", p.Header.Get("Content-Type"))
		}
		if body != nil {
			t.Fatal("more than one text/cloud-config part")
		}
		if body, err = io.ReadAll(p); err != nil {
			t.Fatal(err)
		}
	}
	if body == nil {
		t.Fatal("no text/cloud-config part")
	}
	return body
}

func exampleSpecs(t *testing.T) []string {
	t.Helper()
	files, _ := filepath.Glob("../examples/*.yaml")
	if len(files) < 6 {
		t.Fatalf("expected the example specs, found %v", files)
	}
	return files
}

func userData(t *testing.T, args ...string) []byte {
	t.Helper()
	r := runNodeprov(t, "", append([]string{"cloud-init"}, args...)...)
	if r.code != 0 {
		t.Fatalf("nodeprov cloud-init %q:\n%s", args, r)
	}
	return []byte(r.stdout)
}

const testBinarySHA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// userDataVariants are the ways the tests generate user data for a spec:
// nodeprov on the image with automatic compression, and a download with
// the contents always compressed.
var userDataVariants = []struct {
	name string
	args []string
}{
	{"image-auto", nil},
	{"url-gzip", []string{"--binary-url", "https://downloads.example.com/nodeprov/v1/nodeprov-linux-amd64", "--binary-sha256", testBinarySHA, "--gzip", "always"}},
}

// TestCloudInitSchema validates the user data of every example spec, in
// both formats and both variants, with `cloud-init schema`.
func TestCloudInitSchema(t *testing.T) {
	ci := requireCloudInit(t)
	dir := t.TempDir()
	for _, specFile := range exampleSpecs(t) {
		for _, v := range userDataVariants {
			for _, format := range []string{"cloud-config", "mime"} {
				name := strings.TrimSuffix(filepath.Base(specFile), ".yaml") + "." + v.name + "." + format
				t.Run(name, func(t *testing.T) {
					data := userData(t, append(append([]string{"--format", format}, v.args...), specFile)...)
					if format == "mime" {
						data = cloudConfigPart(t, data)
					}
					f := filepath.Join(dir, name)
					if err := os.WriteFile(f, data, 0o644); err != nil {
						t.Fatal(err)
					}
					if ok, out := schemaCheck(t, ci, f); !ok {
						t.Errorf("cloud-init schema rejects the user data:\n%s\n%s", out, data)
					}
				})
			}
		}
	}

	// The validator is not a rubber stamp: a misspelt key is rejected.
	data := userData(t, "../examples/k8s-worker.yaml")
	bad := bytes.Replace(data, []byte("    permissions: "), []byte("    permission: "), 1)
	f := filepath.Join(dir, "misspelt")
	os.WriteFile(f, bad, 0o644)
	if ok, out := schemaCheck(t, ci, f); ok {
		t.Errorf("cloud-init schema accepts write_files[].permission:\n%s", out)
	}
}

// processUserData is run by cloud-init's own Python: it processes the user
// data as cloud-init does at boot (MIME parts, text/cloud-config merging
// with Merge-Type headers), writes the merged config, runs the real
// write_files module with every path moved under a root directory, and
// writes the runcmd script the way the runcmd module does.
const processUserData = `
import json, os, sys
from cloudinit import handlers, helpers, safeyaml, user_data, util
from cloudinit.config import cc_write_files
from cloudinit.handlers import cloud_config

blob_path, out, root = sys.argv[1:4]
paths = helpers.Paths({"cloud_dir": os.path.join(out, "cloud"), "run_dir": os.path.join(out, "run")})
with open(blob_path, "rb") as f:
    msg = user_data.UserDataProcessor(paths).process(f.read())
handler = cloud_config.CloudConfigPartHandler(paths)
handler.handle_part(None, handlers.CONTENT_START, None, None, None, None)
parts = []
for part in msg.walk():
    if part.get_content_maintype() == "multipart":
        continue
    parts.append(part.get_content_type())
    if part.get_content_type() == "text/cloud-config":
        handler.handle_part(None, part.get_content_type(), part.get_filename(),
                            util.fully_decoded_payload(part), None, dict(part))
cfg = handler.cloud_buf or {}
with open(os.path.join(out, "merged.cfg"), "w") as f:
    f.write("#cloud-config\n" + safeyaml.dumps(cfg))
files = [dict(fi, path=root + fi["path"]) for fi in cfg.get("write_files", [])]
cc_write_files.write_files("write_files", files, "root:root")
with open(os.path.join(out, "runcmd.sh"), "w") as f:
    f.write(util.shellify(cfg.get("runcmd", [])))
json.dump({"parts": parts, "runcmd": [c if isinstance(c, str) else " ".join(c) for c in cfg.get("runcmd", [])],
           "write_files": [fi["path"] for fi in cfg.get("write_files", [])]}, sys.stdout)
`

type processed struct {
	Parts      []string `json:"parts"`
	Runcmd     []string `json:"runcmd"`
	WriteFiles []string `json:"write_files"`
	dir, root  string
}

func processWithCloudInit(t *testing.T, ci string, data []byte) processed {
	t.Helper()
	dir := t.TempDir()
	p := processed{dir: dir, root: filepath.Join(dir, "root")}
	blob, script := filepath.Join(dir, "user-data"), filepath.Join(dir, "process.py")
	os.WriteFile(blob, data, 0o600)
	os.WriteFile(script, []byte(processUserData), 0o644)
	r := runCmd(t, "", cloudInitPython(t, ci), script, blob, dir, p.root)
	if r.code != 0 {
		t.Fatalf("cloud-init's user-data processing failed:\n%s", r)
	}
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatalf("%v\n%s", err, r)
	}
	return p
}

// TestCloudInitWritesSpec has cloud-init's own code process the user data
// of every example (plain and compressed, both formats) and write its
// files: the spec and lock land byte for byte, root-owned, mode 0600; the
// merged config is valid; the runcmd script is valid shell.
func TestCloudInitWritesSpec(t *testing.T) {
	ci := requireCloudInit(t)
	requireRoot(t) // write_files chowns to root:root
	lock := "# a lock file travels with the spec\nhttps://example.com/a.tgz sha256:" + testBinarySHA + "\n"
	for _, example := range exampleSpecs(t) {
		src, err := os.ReadFile(example)
		if err != nil {
			t.Fatal(err)
		}
		// A copy with nodeprov.lock next to it.
		specFile := filepath.Join(t.TempDir(), filepath.Base(example))
		os.WriteFile(specFile, src, 0o644)
		os.WriteFile(filepath.Join(filepath.Dir(specFile), "nodeprov.lock"), []byte(lock), 0o644)
		for _, c := range []struct{ format, gzip string }{{"cloud-config", "never"}, {"mime", "always"}} {
			t.Run(filepath.Base(example)+"."+c.format+"."+c.gzip, func(t *testing.T) {
				p := processWithCloudInit(t, ci, userData(t, "--format", c.format, "--gzip", c.gzip, specFile))
				if strings.Join(p.Parts, ",") != "text/cloud-config" {
					t.Errorf("cloud-init saw parts %q", p.Parts)
				}
				for path, want := range map[string][]byte{"/etc/nodeprov/node.yaml": src, "/etc/nodeprov/nodeprov.lock": []byte(lock)} {
					got, err := os.ReadFile(filepath.Join(p.root, path))
					if err != nil || !bytes.Equal(got, want) {
						t.Errorf("%s as cloud-init wrote it differs (%v):\n%s", path, err, got)
					}
					assertMode(t, filepath.Join(p.root, path), 0o600)
				}
				if ok, out := schemaCheck(t, ci, filepath.Join(p.dir, "merged.cfg")); !ok {
					t.Errorf("merged config:\n%s", out)
				}
				if r := runCmd(t, "", "sh", "-n", filepath.Join(p.dir, "runcmd.sh")); r.code != 0 {
					t.Errorf("runcmd script is not valid sh:\n%s", r)
				}
				if len(p.Runcmd) != 1 || !strings.Contains(p.Runcmd[0], "apply --no-block -o json /etc/nodeprov/node.yaml") {
					t.Errorf("runcmd = %q", p.Runcmd)
				}
			})
		}
	}
}

// TestCloudInitWritesAwkwardSpecs has cloud-init's YAML parser (PyYAML)
// read specs whose bytes a YAML literal block carries only with care, or
// not at all (nodeprov then falls back to base64): trailing spaces, lines
// of spaces, no final newline, several final newlines, tabs, CRLF, text
// that looks like YAML document markers, non-ASCII.
func TestCloudInitWritesAwkwardSpecs(t *testing.T) {
	ci := requireCloudInit(t)
	requireRoot(t)
	head := "apiVersion: nodeprov/v1alpha1\nkind: Node\n"
	for name, src := range map[string]string{
		"trailing spaces":     head + "metadata: {name: x}   \n# comment  \n",
		"space-only lines":    head + "   \n      \nmetadata: {name: x}\n \n",
		"no final newline":    head + "metadata: {name: x}",
		"final newlines":      head + "metadata: {name: x}\n\n\n",
		"space-only last":     head + "metadata: {name: x}\n    ",
		"tab in comment":      head + "# a\tb\nmetadata: {name: x}\n",
		"crlf":                strings.ReplaceAll(head+"metadata: {name: x}\n", "\n", "\r\n"),
		"document markers":    head + "# ---\nfiles:\n  - path: /etc/x\n    contents: |\n      ---\n      ...\n",
		"non-ascii":           head + "# Grüße, 節点 ✓\nmetadata: {name: x}\n",
		"block scalar inside": head + "files:\n  - path: /etc/x\n    contents: |+\n      a\n\n\n",
	} {
		t.Run(name, func(t *testing.T) {
			specFile := filepath.Join(t.TempDir(), "node.yaml")
			os.WriteFile(specFile, []byte(src), 0o644)
			if r := runNodeprov(t, "", "validate", specFile); r.code != 0 {
				t.Fatalf("the test spec is invalid:\n%s", r)
			}
			p := processWithCloudInit(t, ci, userData(t, "--gzip", "never", specFile))
			got, err := os.ReadFile(filepath.Join(p.root, "/etc/nodeprov/node.yaml"))
			if err != nil || string(got) != src {
				t.Errorf("cloud-init wrote %q (%v), want %q", got, err, src)
			}
		})
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Error(err)
		return
	}
	if st.Mode().Perm() != want {
		t.Errorf("%s: mode %v, want %v", path, st.Mode().Perm(), want)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); !ok || sys.Uid != 0 || sys.Gid != 0 {
		t.Errorf("%s: not owned by root:root", path)
	}
}

// TestCloudInitCombinedParts combines the MIME output with a user's own
// cloud-config part that comes first and has runcmd and write_files too.
// With nodeprov's Merge-Type header cloud-init appends nodeprov's lists to
// the user's; without it (cloud-init's default, dict(replace)) the user's
// lists would be lost, which shows what the header is for.
func TestCloudInitCombinedParts(t *testing.T) {
	ci := requireCloudInit(t)
	requireRoot(t)
	ours := userData(t, "--format", "mime", "../examples/gvisor-sandbox.yaml")
	user := "#cloud-config\nruncmd:\n  - echo user part\nwrite_files:\n  - path: /etc/user.txt\n    content: hello\n"
	for _, keepHeader := range []bool{true, false} {
		msg := combine(t, user, ours, keepHeader)
		p := processWithCloudInit(t, ci, msg)
		if strings.Join(p.Parts, ",") != "text/cloud-config,text/cloud-config" {
			t.Fatalf("parts %q", p.Parts)
		}
		wantFiles := "/etc/user.txt,/etc/nodeprov/node.yaml"
		if !keepHeader {
			wantFiles = "/etc/nodeprov/node.yaml"
		}
		if got := strings.Join(p.WriteFiles, ","); got != wantFiles {
			t.Errorf("Merge-Type header %v: write_files %s, want %s", keepHeader, got, wantFiles)
		}
		if keepHeader {
			if len(p.Runcmd) != 2 || p.Runcmd[0] != "echo user part" || !strings.Contains(p.Runcmd[1], `"$nodeprov_bin" apply --no-block`) {
				t.Errorf("runcmd %q, want the user's entry, then nodeprov's", p.Runcmd)
			}
			if ok, out := schemaCheck(t, ci, filepath.Join(p.dir, "merged.cfg")); !ok {
				t.Errorf("merged config:\n%s", out)
			}
		} else if len(p.Runcmd) != 1 {
			t.Errorf("without the header runcmd %q: the control case no longer shows the header's effect", p.Runcmd)
		}
	}
}

// combine builds a multipart message with the user's cloud-config part
// first and the part of nodeprov's message second.
func combine(t *testing.T, userPart string, ours []byte, keepHeader bool) []byte {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(ours))
	if err != nil {
		t.Fatal(err)
	}
	_, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	p, err := multipart.NewReader(msg.Body, params["boundary"]).NextRawPart()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(p)
	if !keepHeader {
		p.Header.Del("Merge-Type")
	}
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	b.WriteString("Content-Type: multipart/mixed; boundary=\"" + w.Boundary() + "\"\r\nMIME-Version: 1.0\r\n\r\n")
	up, _ := w.CreatePart(map[string][]string{"Content-Type": {"text/cloud-config"}})
	up.Write([]byte(userPart))
	np, _ := w.CreatePart(p.Header)
	np.Write(body)
	w.Close()
	return b.Bytes()
}
