package stages

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nodeprov/nodeprov/spec"
)

func TestSysextPath(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "/usr/local/bin/containerd", want: "/usr/bin/containerd"},
		{in: "/usr/local/sbin/runc", want: "/usr/bin/runc"},
		{in: "/usr/sbin/runc", want: "/usr/bin/runc"},
		{in: "/usr/local/sbin", want: "/usr/bin"},
		{in: "/usr/local/lib/kata/x", want: "/usr/lib/kata/x"},
		{in: "/usr/bin/tool", want: "/usr/bin/tool"},
		{in: "/usr/libexec/cni/", want: "/usr/libexec/cni"},
		{in: "/opt/cni/bin/bridge", want: "/opt/cni/bin/bridge"},
		{in: "/usr/local/../local/bin/x", want: "/usr/bin/x"},
		{in: "/etc/containerd/config.toml", err: "outside /usr and /opt"},
		{in: "/var/lib/nodeprov/images/pause.tar", err: "outside /usr and /opt"},
		{in: "/usr/local", err: "not the directory itself"},
		{in: "/opt", err: "not the directory itself"},
		{in: "/usr/local/..", err: "not the directory itself"},
		{in: "usr/bin/x", err: "not an absolute path"},
	} {
		got, err := sysextPath(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("sysextPath(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("sysextPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestSysextRelocations(t *testing.T) {
	arts := []spec.Artifact{
		{Name: "a", SpecPath: "downloads[0]", Install: spec.Install{Path: "/usr/local/bin/a",
			Links: map[string]string{"/usr/local/sbin/a2": "/usr/local/bin/a", "/usr/local/bin/a3": "a"}}},
		{Name: "b", SpecPath: "downloads[1]", Install: spec.Install{Files: map[string]string{"bin/b": "/usr/local/bin/b"}}},
		{Name: "c", SpecPath: "downloads[2]", Install: spec.Install{To: "/opt/c/bin"}},
		{Name: "d", SpecPath: "downloads[3]", Install: spec.Install{To: "/opt/c/bin"}},
	}
	got, err := sysextRelocations(arts)
	if err != nil {
		t.Fatal(err)
	}
	want := []Relocation{{"a", "/usr/local/bin/a", "/usr/bin/a"}, {"a", "/usr/local/bin/a3", "/usr/bin/a3"},
		{"a", "/usr/local/sbin/a2", "/usr/bin/a2"}, {"b", "/usr/local/bin/b", "/usr/bin/b"},
		{"c", "/opt/c/bin", "/opt/c/bin"}, {"d", "/opt/c/bin", "/opt/c/bin"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("relocations:\n got %v\nwant %v", got, want)
	}
	in, err := sysextInstall(arts[0])
	if err != nil {
		t.Fatal(err)
	}
	if in.Links["/usr/bin/a2"] != "/usr/bin/a" || in.Links["/usr/bin/a3"] != "a" {
		t.Errorf("links relocated: %v (an absolute target in /usr/local moves, a relative one stays)", in.Links)
	}

	for _, tc := range []struct {
		arts []spec.Artifact
		want string
	}{
		{[]spec.Artifact{
			{Name: "runc", SpecPath: "components.runc", Install: spec.Install{Path: "/usr/local/sbin/runc"}},
			{Name: "downloads[0]", SpecPath: "downloads[0]", Install: spec.Install{Path: "/usr/bin/runc"}},
		}, "downloads[0] (downloads[0]): /usr/bin/runc lands on /usr/bin/runc, which runc installs too"},
		{[]spec.Artifact{
			{Name: "downloads[0]", SpecPath: "downloads[0]", Install: spec.Install{Files: map[string]string{"x": "/etc/x.conf"}}},
		}, "downloads[0] (downloads[0]): member x: /etc/x.conf is outside /usr and /opt"},
	} {
		if _, err := sysextRelocations(tc.arts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want an error with %q", err, tc.want)
		}
	}
}

func TestExtensionRelease(t *testing.T) {
	for _, tc := range []struct{ id, version, arch, want, err string }{
		{arch: "amd64", want: "ID=_any\nSYSEXT_LEVEL=1.0\nARCHITECTURE=x86-64\nEXTENSION_RELOAD_MANAGER=1\n"},
		{id: "flatcar", version: "4152.2.0", arch: "arm64", want: "ID=flatcar\nVERSION_ID=4152.2.0\nARCHITECTURE=arm64\nEXTENSION_RELOAD_MANAGER=1\n"},
		{id: "flatcar", arch: "amd64", err: "give its VERSION_ID"},
		{version: "12", arch: "amd64", err: "needs an OS id"},
		{arch: "riscv64", err: "unsupported architecture"},
		{id: "Debian OS", version: "12", arch: "amd64", err: "os-release ID"},
		{id: "debian", version: "12\nID=x", arch: "amd64", err: "VERSION_ID"},
	} {
		got, err := extensionRelease(tc.id, tc.version, tc.arch)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("extensionRelease(%q, %q, %q) = %q, %v; want an error with %q", tc.id, tc.version, tc.arch, got, err, tc.err)
		case tc.err == "" && (err != nil || string(got) != tc.want):
			t.Errorf("extensionRelease(%q, %q, %q) = %q, %v; want %q", tc.id, tc.version, tc.arch, got, err, tc.want)
		}
	}
	for _, name := range []string{"", "a/b", "x.raw", ".hidden", "has space", strings.Repeat("n", 65)} {
		if checkSysextName(name) == nil {
			t.Errorf("extension name %q accepted", name)
		}
	}
}

const sysextUnitsSpec = `apiVersion: nodeprov/v1alpha1
kind: Node
metadata: {name: worker}
components:
  containerd: {version: 1.7.27}
units:
  - name: containerd.service
    enabled: true
    dropins: [{name: 10-limits.conf, contents: "[Service]\nLimitNOFILE=1048576\n"}]
  - {name: idle.service, contents: "[Service]\nExecStart=/usr/bin/sleep infinity\n"}
  - {name: ticker.timer, state: started, contents: "[Timer]\nOnCalendar=daily\n"}
  - {name: old.service, masked: true}
`

func TestSysextUnits(t *testing.T) {
	n := load(t, sysextUnitsSpec).Spec
	files, upheld, notes, err := sysextUnits(n, "worker", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range files {
		got[f.path] = string(f.data)
	}
	if u := got["/usr/lib/systemd/system/containerd.service"]; !strings.Contains(u, "\nExecStart=/usr/bin/containerd\n") {
		t.Errorf("built-in containerd.service does not start /usr/bin/containerd:\n%s", u)
	}
	if got["/usr/lib/systemd/system/containerd.service.d/10-limits.conf"] != "[Service]\nLimitNOFILE=1048576\n" {
		t.Errorf("drop-in: %q", got["/usr/lib/systemd/system/containerd.service.d/10-limits.conf"])
	}
	if _, ok := got["/usr/lib/systemd/system/idle.service"]; !ok {
		t.Error("idle.service not shipped")
	}
	wiring := got["/usr/lib/systemd/system/multi-user.target.d/10-worker.conf"]
	if !strings.HasSuffix(wiring, "[Unit]\nUpholds=containerd.service\nUpholds=ticker.timer\n") {
		t.Errorf("wiring:\n%s", wiring)
	}
	if fmt.Sprint(upheld) != "[containerd.service ticker.timer]" {
		t.Errorf("upheld %v", upheld)
	}
	if _, ok := got["/usr/lib/systemd/system/old.service"]; ok || len(notes) != 1 || !strings.Contains(notes[0], "units[3] (old.service)") {
		t.Errorf("masked unit: shipped %v, notes %q", ok, notes)
	}
	if len(files) != 5 {
		t.Errorf("%d files, want 5", len(files))
	}

	relocs := []Relocation{{"downloads[0]", "/usr/local/bin/tool", "/usr/bin/tool"}}
	n.Units = []spec.Unit{{Name: "tool.service", Contents: "[Service]\nExecStart=/usr/local/bin/tool --serve\n"}}
	if _, _, _, err := sysextUnits(n, "worker", relocs); err == nil || !strings.Contains(err.Error(), "units[0] (tool.service): names /usr/local/bin/tool, which the extension holds at /usr/bin/tool") {
		t.Errorf("a unit naming a moved path: %v", err)
	}
	n.Units[0].Contents = "[Service]\nExecStart=/usr/local/bin/toolbox\n"
	if _, _, _, err := sysextUnits(n, "worker", relocs); err != nil {
		t.Errorf("a unit naming another path that shares the prefix: %v", err)
	}
	n.Units = []spec.Unit{{Name: "docker.service"}}
	if _, _, _, err := sysextUnits(n, "worker", nil); err == nil || !strings.Contains(err.Error(), "give the unit's contents") {
		t.Errorf("a built-in other than containerd's: %v", err)
	}
}

// TestSysextBuild builds an image of a spec with a plain file, archive
// members, an archive tree and a link, served over HTTP, twice: the bytes
// are identical, and the image holds the relocated files, the unit wiring
// and the release file, root-owned with time 0. A digest that does not
// match fails the build and leaves no image.
func TestSysextBuild(t *testing.T) {
	if _, err := exec.LookPath("mksquashfs"); err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatalf("needs root and mksquashfs (squashfs-tools), and CI must not skip: %v", err)
		}
		t.Skip("needs root (installs chown to root) and mksquashfs (squashfs-tools)")
	}
	tool := []byte("#!/bin/sh\necho tool\n")
	tgz := tarGz(t, map[string]string{"bin/helper": "#!/bin/sh\necho helper\n", "plugins/p1": "p1", "plugins/p2": "p2"})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/tool":
			w.Write(tool)
		case "/bundle.tgz":
			w.Write(tgz)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	specText := func(toolSum string) string {
		return fmt.Sprintf(`apiVersion: nodeprov/v1alpha1
kind: Node
metadata: {name: tools}
kernel: {sysctl: {net.ipv4.ip_forward: "1"}}
downloads:
  - {url: %[1]s/tool, sha256: "%[2]s", path: /usr/local/bin/tool, mode: "0755"}
  - url: %[1]s/bundle.tgz
    sha256: %[3]s
    extract: {files: {bin/helper: /usr/local/sbin/helper}}
  - url: %[1]s/bundle.tgz
    sha256: %[3]s
    extract: {to: /usr/local/lib/plugins, strip: 1, include: [p1, p2]}
units:
  - {name: tool.service, enabled: true, contents: "[Service]\nExecStart=/usr/bin/tool\n"}
`, srv.URL, toolSum, sha256Hex(tgz))
	}
	build := func(name, text string) (*SysextResult, error) {
		doc := load(t, text)
		return Sysext(context.Background(), SysextOptions{Spec: doc.Spec, RootDir: "/", Arch: "arm64", Out: filepath.Join(t.TempDir(), name), Downloads: Downloads{Parallel: 2}})
	}
	first, err := build("one", specText(sha256Hex(tool)))
	if err != nil {
		t.Fatal(err)
	}
	old := syscall.Umask(0o077)
	second, err := build("two", specText(sha256Hex(tool)))
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(second.Image)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != first.SHA256 || second.SHA256 != first.SHA256 {
		t.Fatalf("two builds differ: %s and %s", first.SHA256, second.SHA256)
	}
	if filepath.Base(first.Image) != "tools.raw" || fmt.Sprint(first.Host) != "[kernel]" || fmt.Sprint(first.Upheld) != "[tool.service]" {
		t.Errorf("image %s, host stages %v, upheld %v", first.Image, first.Host, first.Upheld)
	}

	out, err := exec.Command("unsquashfs", "-lln", "-d", "", first.Image).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs: %v\n%s", err, out)
	}
	listing := string(out)
	for _, want := range []string{
		"/usr/bin/tool\n",
		"/usr/bin/helper\n",
		"/usr/lib/plugins/p1\n",
		"/usr/lib/plugins/p2\n",
		"/usr/lib/systemd/system/tool.service\n",
		"/usr/lib/systemd/system/multi-user.target.d/10-tools.conf\n",
		"/usr/lib/extension-release.d/extension-release.tools\n",
	} {
		if !strings.Contains(listing, want) {
			t.Errorf("image listing lacks %q:\n%s", want, listing)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(listing), "\n") {
		if f := strings.Fields(line); len(f) < 5 || f[1] != "0/0" || f[3] != "1970-01-01" || f[4] != "00:00" {
			t.Errorf("not root-owned at time 0: %s", line)
		}
		if strings.HasSuffix(line, " /usr/bin/tool") && !strings.HasPrefix(line, "-rwxr-xr-x ") {
			t.Errorf("tool: %s", line)
		}
	}
	for _, bad := range []string{"/usr/local", "/usr/sbin", "/var", "/etc", "/run"} {
		if strings.Contains(listing, " "+bad) {
			t.Errorf("image holds %s:\n%s", bad, listing)
		}
	}
	if first.Release != "ID=_any\nSYSEXT_LEVEL=1.0\nARCHITECTURE=arm64\nEXTENSION_RELOAD_MANAGER=1\n" {
		t.Errorf("release %q", first.Release)
	}

	outDir := filepath.Join(t.TempDir(), "bad")
	_, err = Sysext(context.Background(), SysextOptions{Spec: load(t, specText(strings.Repeat("0", 64))).Spec, RootDir: "/", Arch: "amd64", Out: outDir})
	if err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("a wrong digest: %v", err)
	}
	if entries, _ := os.ReadDir(outDir); len(entries) != 0 {
		t.Errorf("a failed build left %v in --out", entries)
	}
}

func tarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, name := range []string{"bin/helper", "plugins/p1", "plugins/p2"} {
		body := files[name]
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
