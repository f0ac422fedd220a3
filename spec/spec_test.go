package spec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const header = "apiVersion: nodeprov/v1alpha1\nkind: Node\n"

// diags loads src and returns its diagnostics as "line:col: path: message".
func diags(t *testing.T, src string) []string {
	t.Helper()
	_, err := Load("t.yaml", []byte(src))
	if err == nil {
		return nil
	}
	var ds *Diagnostics
	if !errors.As(err, &ds) {
		t.Fatalf("error is %T, not *Diagnostics: %v", err, err)
	}
	var out []string
	for _, d := range ds.Items {
		out = append(out, fmt.Sprintf("%d:%d: %s: %s", d.Line, d.Column, d.Path, d.Message))
	}
	return out
}

func TestDiagnostics(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // substrings, one per diagnostic, in order
	}{
		{"unknown key with suggestion", header + "kernel:\n  sysctls: {}\n",
			[]string{`4:3: kernel: unknown key "sysctls"; did you mean "sysctl"?`}},
		{"wrong type", header + "kernel:\n  modules: overlay\n",
			[]string{`4:12: kernel.modules: expected a list, got a string "overlay"`}},
		{"duplicate key", header + "kernel:\n  modules: []\n  modules: [x]\n",
			[]string{`5:3: kernel: duplicate key "modules" (first defined at line 4)`}},
		{"tls.ca that is not a certificate", header + "tls:\n  ca: \"-----BEGIN PGP PUBLIC KEY BLOCK-----\\nxx\\n\"\n",
			[]string{`4:7: tls.ca: expected PEM certificates (-----BEGIN CERTIFICATE-----), found other text`}},
		{"tls.ca with a private key", header + "tls:\n  ca: \"-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----\\n\"\n",
			[]string{`tls.ca: PEM block 1 is "PRIVATE KEY", expected CERTIFICATE`}},
		{"tls.caFile relative", header + "tls: {caFile: ca.pem}\n",
			[]string{`tls.caFile: path "ca.pem" must be absolute`}},
		{"unquoted octal mode", header + "files:\n- path: /a\n  mode: 0644\n",
			[]string{`5:9: files[0].mode: file mode must be a quoted octal string`}},
		{"bad octal mode", header + "files:\n- path: /a\n  mode: \"0888\"\n",
			[]string{`5:9: files[0].mode: invalid file mode "0888"`}},
		{"bad sysctl key points at the key", header + "kernel:\n  sysctl:\n    Net.IPv4: 1\n",
			[]string{`5:5: kernel.sysctl["Net.IPv4"]: invalid sysctl key`}},
		{"empty sysctl value", header + "kernel:\n  sysctl:\n    net.ipv4.ip_forward: \"\"\n",
			[]string{`5:26: kernel.sysctl["net.ipv4.ip_forward"]: sysctl net.ipv4.ip_forward has an empty value`}},
		{"bool sysctl value", header + "kernel:\n  sysctl:\n    net.ipv4.ip_forward: true\n",
			[]string{`expected a string or an integer, got a boolean "true"; quote it`}},
		{"bad module", header + "kernel:\n  modules: [\"a b\"]\n",
			[]string{`4:13: kernel.modules[0]: invalid module name "a b"`}},
		{"bad url", header + "downloads:\n- url: ftp://h/x\n  sha256: " + strings.Repeat("a", 64) + "\n  path: /x\n",
			[]string{`4:8: downloads[0].url: URL "ftp://h/x": unsupported scheme "ftp"`}},
		{"bad digest", header + "downloads:\n- url: https://h/x\n  sha256: abc\n  path: /x\n",
			[]string{`5:11: downloads[0].sha256: invalid digest: expected 64 lower-case hex characters, got 3`}},
		{"missing required", "kind: Node\n",
			[]string{`1:1: : missing required key "apiVersion"`}},
		{"wrong apiVersion", "apiVersion: v1\nkind: Node\n",
			[]string{`1:13: apiVersion: unsupported apiVersion "v1"`}},
		{"enum", header + "containerd:\n  cgroupDriver: system\n",
			[]string{`4:17: containerd.cgroupDriver: invalid value "system": expected one of auto, systemd, cgroupfs`}},
		{"yes is not a boolean", header + "units:\n- name: a.service\n  enabled: yes\n",
			[]string{`5:12: units[0].enabled: expected true or false, got a string "yes"`}},
		{"float version", header + "components:\n  runc: {version: 1.3}\n",
			[]string{`version 1.3 is a YAML number; quote it`}},
		{"leading v", header + "components:\n  runc: {version: v1.3.0}\n",
			[]string{`without the leading v: "1.3.0"`}},
		{"undefined keyring", header + "downloads:\n- url: https://h/x\n  path: /x\n  signature: {url: https://h/x.asc, keyring: runc}\n",
			[]string{`downloads[0].signature.keyring: keyring "runc" is not defined in keyrings`}},
		{"relative path", header + "files:\n- path: etc/x\n",
			[]string{`4:9: files[0].path: path "etc/x" must be absolute`}},
		{"file under /proc/sys", header + "files:\n- path: /proc/sys/net/ipv4/ip_forward\n  contents: \"1\"\n",
			[]string{`4:9: files[0].path: /proc/sys/net/ipv4/ip_forward is inside /proc, a kernel API filesystem: in an image root it is hidden at boot, on a live host it is a kernel interface; set kernel parameters with kernel.sysctl (net.ipv4.ip_forward: ...)`}},
		{"file under /sys", header + "files:\n- path: /sys/kernel/mm/transparent_hugepage/enabled\n",
			[]string{`4:9: files[0].path: /sys/kernel/mm/transparent_hugepage/enabled is inside /sys`}},
		{"file under /dev", header + "files:\n- {path: /dev/kvm, type: directory}\n",
			[]string{`4:10: files[0].path: /dev/kvm is inside /dev`}},
		{"/proc itself", header + "files:\n- {path: /proc, type: directory}\n",
			[]string{`files[0].path: /proc is inside /proc`}},
		{"download into /sys", header + "downloads:\n- {url: https://h/x, sha256: " + strings.Repeat("a", 64) + ", path: /sys/x}\n",
			[]string{`downloads[0].path: /sys/x is inside /sys`}},
		{"archive member into /dev", header + "downloads:\n- url: https://h/x.tgz\n  sha256: " + strings.Repeat("a", 64) + "\n  extract: {files: {bin/x: /dev/x}}\n",
			[]string{`6:28: downloads[0].extract.files["bin/x"]: /dev/x is inside /dev`}},
		{"component into /proc", header + "components:\n  runc: {version: 1.3.0, path: /proc/runc}\n",
			[]string{`components.runc.path: /proc/runc is inside /proc`}},
		{"not an API filesystem", header + "files:\n- {path: /devices/x, contents: x}\n- {path: /system/x, contents: x}\n- {path: /process, contents: x}\n",
			nil},
		{"sandbox image not a reference", header + "containerd:\n  sandboxImage: \"not a valid ref!!\"\n",
			[]string{`4:17: containerd.sandboxImage: invalid image reference "not a valid ref!!": invalid reference format`}},
		{"sandbox image upper case", header + "containerd:\n  sandboxImage: registry.k8s.io/Pause:3.10\n",
			[]string{`containerd.sandboxImage: invalid image reference "registry.k8s.io/Pause:3.10": invalid reference format: repository name`}},
		{"sandbox image bad digest", header + "containerd:\n  sandboxImage: registry.k8s.io/pause@sha256:abc\n",
			[]string{`containerd.sandboxImage: invalid image reference "registry.k8s.io/pause@sha256:abc"`}},
		{"unclean path", header + "files:\n- path: /etc/../x\n",
			[]string{`path "/etc/../x" is not clean`}},
		{"bad patch", header + "containerd:\n  patch: \"[x\"\n",
			[]string{`containerd.patch: patch is not valid TOML`}},
		{"merge keys", header + "files:\n- &f {path: /a, mode: \"0600\", contents: x}\n- <<: *f\n  path: /b\n- {<<: [{owner: root}, *f], path: /c}\n",
			nil},
		// A merged value's diagnostic points where the value is written.
		{"merged value error at the anchor", header + "files:\n- &f {path: /a, mode: 0644}\n- <<: *f\n  path: /b\n",
			[]string{`4:23: files[0].mode: file mode must be a quoted octal string`, `4:23: files[1].mode: file mode must be a quoted octal string`}},
		{"merged key overridden, unknown key from the anchor", header + "files:\n- &f {path: /a, contnets: x}\n- {<<: *f, path: /b}\n",
			[]string{`4:17: files[0]: unknown key "contnets"`, `4:17: files[1]: unknown key "contnets"`}},
		{"merge of a scalar", header + "metadata:\n  <<: name\n",
			[]string{`4:3: metadata: a merge key (<<) takes a mapping or a list of mappings, got a string "name"`}},
		{"explicit duplicate next to a merge", header + "metadata: &m {name: a}\nkernel:\n  <<: {modules: [x]}\n  modules: [y]\n  modules: [z]\n",
			[]string{`7:3: kernel: duplicate key "modules" (first defined at line 6)`}},
		{"syntax error", header + "kernel:\n  modules: [a\n",
			[]string{`YAML syntax:`}},
		{"two documents", header + "---\n" + header,
			[]string{`more than one YAML document`}},
		{"fleet without a kubeconfig", header + "machineID:\n  fleet: {nodeName: worker-1}\n",
			[]string{`4:10: machineID.fleet: missing required key "kubeconfig"`}},
		{"fleet kubeconfig relative", header + "machineID:\n  fleet: {kubeconfig: fleet.conf}\n",
			[]string{`4:23: machineID.fleet.kubeconfig: path "fleet.conf" must be absolute`}},
		{"fleet node name upper case", header + "machineID:\n  fleet: {kubeconfig: /etc/nodeprov/fleet.conf, nodeName: Worker_1}\n",
			[]string{`4:59: machineID.fleet.nodeName: invalid Node name "Worker_1": expected a DNS subdomain`}},
		{"fleet", header + "machineID:\n  policy: regenerate\n  fleet: {kubeconfig: /etc/nodeprov/fleet.conf, nodeName: ip-10-0-0-1.ec2.internal}\n",
			nil},
		{"empty", "", []string{`1:1: : spec is empty`}},
		{"not utf-8", header + "metadata: {name: \"\xff\"}\n", []string{`3:19: : spec is not valid UTF-8`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := diags(t, tt.src)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d diagnostics, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("diagnostic %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

// TestBrokenExample is the five-mistake spec of the demo: all five are
// reported at once, in file order, each at its own line and column.
// The references containerd accepts as a sandbox image validate.
func TestSandboxImageReferences(t *testing.T) {
	for _, ref := range []string{
		"pause:3.10", "registry.k8s.io/pause:3.10", "registry.k8s.io/pause", "docker.io/library/busybox:latest",
		"localhost:5000/pause:3.10", "mirror.internal:5000/k8s/pause:3.10@sha256:" + strings.Repeat("ab", 32),
		"registry.k8s.io/pause@sha256:" + strings.Repeat("0f", 32), "[::1]:5000/pause:1",
	} {
		if _, err := Load("ref.yaml", []byte(header+"containerd:\n  sandboxImage: \""+ref+"\"\n")); err != nil {
			t.Errorf("%s: %v", ref, err)
		}
	}
}

func TestBrokenExample(t *testing.T) {
	src, err := os.ReadFile("../examples/testdata/broken.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := diags(t, string(src))
	want := []string{
		`5:22: kernel.modules[1]: invalid module name "br netfilter"`,
		`8:5: kernel.sysctl: duplicate key "net.ipv4.ip_forward"`,
		`11:11: files[0].mode: file mode must be a quoted octal string`,
		`12:5: files[0]: unknown key "contnets"; did you mean "contents"?`,
		`15:13: downloads[0].sha256: invalid digest`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d diagnostics, want 5:\n%s", len(got), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("diagnostic %d = %q, want prefix %q", i, got[i], want[i])
		}
	}
}

func TestPrettyShowsSourceAndCaret(t *testing.T) {
	_, err := Load("node.yaml", []byte(header+"kernel:\n  modules: [ok, \"a b\"]\n"))
	var ds *Diagnostics
	if !errors.As(err, &ds) {
		t.Fatalf("want diagnostics, got %v", err)
	}
	want := "node.yaml:4:17: kernel.modules[1]: invalid module name \"a b\": expected letters, digits, '_' or '-'\n" +
		"    4 |   modules: [ok, \"a b\"]\n" +
		"      |                 ^\n"
	if got := ds.Pretty(); got != want {
		t.Errorf("Pretty() =\n%s\nwant\n%s", got, want)
	}
}

func TestExamplesValidate(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(src), "# yaml-language-server: $schema=../schema/nodeprov.schema.json\n") {
				t.Errorf("%s does not start with the yaml-language-server modeline", f)
			}
			if _, err := Load(f, src); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	doc, err := Load("t.yaml", []byte(header+`
components:
  containerd: {version: 2.1.4}
  cni: {version: 1.7.1}
  gvisor: {version: 20250512}
files:
- path: /etc/a
- path: /var/d
  type: directory
units:
- name: a.service
`))
	if err != nil {
		t.Fatal(err)
	}
	n := doc.Spec
	checks := []struct{ name, got, want string }{
		{"file mode", string(n.Files[0].Mode), "0644"},
		{"dir mode", string(n.Files[1].Mode), "0755"},
		{"owner", n.Files[0].Owner, "root:root"},
		{"containerd created from component", fmt.Sprint(n.Containerd != nil), "true"},
		{"cgroupDriver", n.Containerd.CgroupDriver, "auto"},
		{"sandboxImage", n.Containerd.SandboxImage, "registry.k8s.io/pause:3.10"},
		{"cni network follows the component", n.Containerd.CNI.Network, "bridge"},
		{"cni installDir", n.Components.CNI.InstallDir, "/opt/cni/bin"},
		{"gvisor version from an integer", string(n.Components.GVisor.Version), "20250512"},
		{"gvisor shim", fmt.Sprint(*n.Components.GVisor.Shim), "true"},
		{"unit state", n.Units[0].State, "unchanged"},
		{"machineID policy", n.MachineID.Policy, "fail"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if n.Units[0].Enabled != nil {
		t.Errorf("units[0].enabled defaulted to %v; absent must mean leave as is", *n.Units[0].Enabled)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	src, err := os.ReadFile("../examples/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := Load("demo.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(doc.Spec)
	if err != nil {
		t.Fatal(err)
	}
	doc2, err := Load("expanded.yaml", out)
	if err != nil {
		t.Fatalf("expanded spec does not load: %v\n%s", err, out)
	}
	again, _ := Marshal(doc2.Spec)
	if string(again) != string(out) {
		t.Errorf("expanded form is not stable:\n%s\nvs\n%s", out, again)
	}
	if !strings.Contains(string(out), `mode: "0644"`) {
		t.Errorf("defaults missing from the expanded form:\n%s", out)
	}
}

func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString(header + "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 9; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	b.WriteString("containerd:\n  runtimes:\n    x:\n      type: io.containerd.x.v1\n      options: {bomb: *a8}\n")
	got := diags(t, b.String())
	if len(got) == 0 {
		t.Fatal("alias bomb was accepted")
	}
	if !strings.Contains(strings.Join(got, "\n"), "more than 200000 YAML nodes") {
		t.Errorf("want a node budget error, got:\n%s", strings.Join(got, "\n"))
	}
}

// Merge keys cannot multiply work either: nine levels of mappings that
// each merge the previous level ten times would be 10^9 pair visits.
func TestMergeKeyBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString(header + "files:\n- &f0 {path: /f0, contents: x, mode: \"0644\", owner: root}\n")
	for i := 1; i < 10; i++ {
		refs := strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*f%d, ", i-1), 10), ", ")
		fmt.Fprintf(&b, "- &f%d {<<: [%s], path: /f%d}\n", i, refs, i)
	}
	got := diags(t, b.String())
	if !strings.Contains(strings.Join(got, "\n"), "more than 200000 YAML nodes") {
		t.Errorf("want a node budget error, got:\n%s", strings.Join(got, "\n"))
	}
}

func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("../examples/*.yaml")
	seeds = append(seeds, "../examples/testdata/broken.yaml")
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(header + "kernel: {sysctl: {a.b: [1]}}\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		doc, err := Load("f.yaml", src)
		if err == nil {
			// A spec that validates also expands, for every architecture.
			for _, arch := range Arches() {
				if _, err := Expand(doc.Spec, arch); err != nil {
					t.Fatalf("valid spec does not expand for %s: %v", arch, err)
				}
			}
			return
		}
		var ds *Diagnostics
		if !errors.As(err, &ds) {
			t.Fatalf("error is %T, not *Diagnostics: %v", err, err)
		}
		if len(ds.Items) == 0 {
			t.Fatal("empty diagnostics")
		}
		for _, d := range ds.Items {
			if d.Line < 1 || d.Column < 1 {
				t.Fatalf("diagnostic without a position: %+v", d)
			}
		}
		_ = ds.Pretty()
	})
}
