package spec

import (
	"encoding/json"
	"io/fs"
	"maps"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// expandSpec loads header+src and expands it for arch.
func expandSpec(t *testing.T, src, arch string) []Artifact {
	t.Helper()
	doc, err := Load("t.yaml", []byte(header+src))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	as, err := Expand(doc.Spec, arch)
	if err != nil {
		t.Fatalf("Expand(%s): %v", arch, err)
	}
	return as
}

func dump(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

func checkArtifacts(t *testing.T, got, want []Artifact) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("artifacts differ\n got: %s\nwant: %s", dump(got), dump(want))
	}
}

const (
	ghContainerd = "https://github.com/containerd/containerd/releases/download/"
	ghRunc       = "https://github.com/opencontainers/runc/releases/download/"
	ghCNI        = "https://github.com/containernetworking/plugins/releases/download/"
	gcsGVisor    = "https://storage.googleapis.com/gvisor/releases/release/"
	ghCrictl     = "https://github.com/kubernetes-sigs/cri-tools/releases/download/"
)

var (
	pinAMD64 = strings.Repeat("a", 64)
	pinARM64 = strings.Repeat("b", 64)
)

// plain is an artifact installed as one file; upstream equals url (no
// mirrors).
func plain(name, specPath, url string, sum *ChecksumRef, max int64, target string, mode fs.FileMode) Artifact {
	return Artifact{Name: name, SpecPath: specPath, URL: url, Upstream: url, Checksum: sum, MaxSize: max,
		Install: Install{Path: target, Mode: mode}}
}

// archive is an artifact whose named members are installed.
func archive(name, specPath, url string, sum *ChecksumRef, max int64, files map[string]string) Artifact {
	return Artifact{Name: name, SpecPath: specPath, URL: url, Upstream: url, Checksum: sum, MaxSize: max,
		Install: Install{Files: files}}
}

func sha256File(url, name string) *ChecksumRef {
	return &ChecksumRef{URL: url, Algorithm: "sha256", Name: name}
}

func sha512File(url, name string) *ChecksumRef {
	return &ChecksumRef{URL: url, Algorithm: "sha512", Name: name}
}

// members maps member prefix+name to dir/name for each name.
func members(prefix, dir string, names ...string) map[string]string {
	m := map[string]string{}
	for _, n := range names {
		m[prefix+n] = dir + "/" + n
	}
	return m
}

var (
	containerd2Bins  = []string{"containerd", "containerd-shim-runc-v2", "containerd-stress", "ctr"}
	containerd17Bins = []string{"containerd", "containerd-shim", "containerd-shim-runc-v1", "containerd-shim-runc-v2", "containerd-stress", "ctr"}
	cniBase          = []string{"bandwidth", "bridge", "dhcp", "firewall", "host-device", "host-local", "ipvlan", "loopback", "macvlan", "portmap", "ptp", "sbr", "static", "tuning", "vlan", "vrf"}
)

func TestExpandComponents(t *testing.T) {
	withPin := func(a Artifact, pin string) Artifact { a.SHA256 = pin; return a }
	signed := func(a Artifact, keyring string) Artifact {
		a.Checksum.Signature = &SignatureRef{Keyring: keyring}
		a.Signature = &SignatureRef{URL: a.URL + ".asc", Keyring: keyring}
		return a
	}
	const keyrings = "keyrings:\n  runc: {path: /etc/nodeprov/keys/runc.keyring}\n"
	tests := []struct {
		name string
		src  string
		arch string
		want []Artifact
	}{
		{"containerd 2.x amd64", "components:\n  containerd: {version: 2.1.4}\n", "amd64", []Artifact{
			archive("containerd", "components.containerd", ghContainerd+"v2.1.4/containerd-2.1.4-linux-amd64.tar.gz",
				sha256File(ghContainerd+"v2.1.4/containerd-2.1.4-linux-amd64.tar.gz.sha256sum", "containerd-2.1.4-linux-amd64.tar.gz"),
				256<<20, members("bin/", "/usr/local/bin", containerd2Bins...)),
		}},
		{"containerd 2.x arm64", "components:\n  containerd: {version: 2.0.5}\n", "arm64", []Artifact{
			archive("containerd", "components.containerd", ghContainerd+"v2.0.5/containerd-2.0.5-linux-arm64.tar.gz",
				sha256File(ghContainerd+"v2.0.5/containerd-2.0.5-linux-arm64.tar.gz.sha256sum", "containerd-2.0.5-linux-arm64.tar.gz"),
				256<<20, members("bin/", "/usr/local/bin", containerd2Bins...)),
		}},
		{"containerd 1.7 lists the v1 shims", "components:\n  containerd: {version: 1.7.27}\n", "amd64", []Artifact{
			archive("containerd", "components.containerd", ghContainerd+"v1.7.27/containerd-1.7.27-linux-amd64.tar.gz",
				sha256File(ghContainerd+"v1.7.27/containerd-1.7.27-linux-amd64.tar.gz.sha256sum", "containerd-1.7.27-linux-amd64.tar.gz"),
				256<<20, members("bin/", "/usr/local/bin", containerd17Bins...)),
		}},
		{"containerd 1.6 static arm64", "components:\n  containerd: {version: 1.6.33, static: true}\n", "arm64", []Artifact{
			archive("containerd", "components.containerd", ghContainerd+"v1.6.33/containerd-static-1.6.33-linux-arm64.tar.gz",
				sha256File(ghContainerd+"v1.6.33/containerd-static-1.6.33-linux-arm64.tar.gz.sha256sum", "containerd-static-1.6.33-linux-arm64.tar.gz"),
				256<<20, members("bin/", "/usr/local/bin", containerd17Bins...)),
		}},
		{"containerd overrides", "components:\n  containerd:\n    version: 2.1.4\n    static: true\n    binaries: [containerd, containerd-shim-runc-v2]\n    installDir: /opt/bin\n    maxSize: 64Mi\n    sha256: {amd64: " + pinAMD64 + ", arm64: " + pinARM64 + "}\n", "arm64", []Artifact{
			withPin(archive("containerd", "components.containerd", ghContainerd+"v2.1.4/containerd-static-2.1.4-linux-arm64.tar.gz",
				sha256File(ghContainerd+"v2.1.4/containerd-static-2.1.4-linux-arm64.tar.gz.sha256sum", "containerd-static-2.1.4-linux-arm64.tar.gz"),
				64<<20, members("bin/", "/opt/bin", "containerd", "containerd-shim-runc-v2")), pinARM64),
		}},
		{"runc without keyring: unsigned checksum only", "components:\n  runc: {version: 1.3.0}\n", "amd64", []Artifact{
			plain("runc", "components.runc", ghRunc+"v1.3.0/runc.amd64", sha256File(ghRunc+"v1.3.0/runc.sha256sum", "runc.amd64"),
				64<<20, "/usr/local/sbin/runc", 0o755),
		}},
		{"runc with keyring: clearsigned checksum and .asc", "components:\n  runc: {version: 1.3.0, keyring: runc}\n" + keyrings, "arm64", []Artifact{
			signed(plain("runc", "components.runc", ghRunc+"v1.3.0/runc.arm64", sha256File(ghRunc+"v1.3.0/runc.sha256sum", "runc.arm64"),
				64<<20, "/usr/local/sbin/runc", 0o755), "runc"),
		}},
		{"runc rc version, path and pin", "components:\n  runc: {version: 1.2.0-rc.1, path: /usr/bin/runc, sha256: {amd64: " + pinAMD64 + "}}\n", "amd64", []Artifact{
			withPin(plain("runc", "components.runc", ghRunc+"v1.2.0-rc.1/runc.amd64", sha256File(ghRunc+"v1.2.0-rc.1/runc.sha256sum", "runc.amd64"),
				64<<20, "/usr/bin/runc", 0o755), pinAMD64),
		}},
		{"runc pin for the other arch only", "components:\n  runc: {version: 1.3.0, sha256: {amd64: " + pinAMD64 + "}}\n", "arm64", []Artifact{
			plain("runc", "components.runc", ghRunc+"v1.3.0/runc.arm64", sha256File(ghRunc+"v1.3.0/runc.sha256sum", "runc.arm64"),
				64<<20, "/usr/local/sbin/runc", 0o755),
		}},
		{"cni listed plugins amd64", "components:\n  cni: {version: 1.7.1, plugins: [bridge, host-local, loopback, portmap]}\n", "amd64", []Artifact{
			archive("cni", "components.cni", ghCNI+"v1.7.1/cni-plugins-linux-amd64-v1.7.1.tgz",
				sha256File(ghCNI+"v1.7.1/cni-plugins-linux-amd64-v1.7.1.tgz.sha256", "cni-plugins-linux-amd64-v1.7.1.tgz"),
				256<<20, members("./", "/opt/cni/bin", "bridge", "host-local", "loopback", "portmap")),
		}},
		{"cni all plugins by default arm64", "components:\n  cni: {version: 1.7.1}\n", "arm64", []Artifact{
			archive("cni", "components.cni", ghCNI+"v1.7.1/cni-plugins-linux-arm64-v1.7.1.tgz",
				sha256File(ghCNI+"v1.7.1/cni-plugins-linux-arm64-v1.7.1.tgz.sha256", "cni-plugins-linux-arm64-v1.7.1.tgz"),
				256<<20, members("./", "/opt/cni/bin", CNIPlugins...)),
		}},
		{"cni before 1.4.0: default without tap and dummy", "components:\n  cni: {version: 1.3.0, installDir: /usr/libexec/cni}\n", "amd64", []Artifact{
			archive("cni", "components.cni", ghCNI+"v1.3.0/cni-plugins-linux-amd64-v1.3.0.tgz",
				sha256File(ghCNI+"v1.3.0/cni-plugins-linux-amd64-v1.3.0.tgz.sha256", "cni-plugins-linux-amd64-v1.3.0.tgz"),
				256<<20, members("./", "/usr/libexec/cni", cniBase...)),
		}},
		{"gvisor amd64 is x86_64, with shim", "components:\n  gvisor: {version: \"20250512\"}\n", "amd64", []Artifact{
			plain("gvisor/runsc", "components.gvisor", gcsGVisor+"20250512/x86_64/runsc",
				sha512File(gcsGVisor+"20250512/x86_64/runsc.sha512", "runsc"), 256<<20, "/usr/local/bin/runsc", 0o755),
			plain("gvisor/containerd-shim-runsc-v1", "components.gvisor", gcsGVisor+"20250512/x86_64/containerd-shim-runsc-v1",
				sha512File(gcsGVisor+"20250512/x86_64/containerd-shim-runsc-v1.sha512", "containerd-shim-runsc-v1"), 128<<20, "/usr/local/bin/containerd-shim-runsc-v1", 0o755),
		}},
		{"gvisor arm64 is aarch64, point release", "components:\n  gvisor: {version: \"20250512.1\"}\n", "arm64", []Artifact{
			plain("gvisor/runsc", "components.gvisor", gcsGVisor+"20250512.1/aarch64/runsc",
				sha512File(gcsGVisor+"20250512.1/aarch64/runsc.sha512", "runsc"), 256<<20, "/usr/local/bin/runsc", 0o755),
			plain("gvisor/containerd-shim-runsc-v1", "components.gvisor", gcsGVisor+"20250512.1/aarch64/containerd-shim-runsc-v1",
				sha512File(gcsGVisor+"20250512.1/aarch64/containerd-shim-runsc-v1.sha512", "containerd-shim-runsc-v1"), 128<<20, "/usr/local/bin/containerd-shim-runsc-v1", 0o755),
		}},
		{"gvisor without shim; pin applies to runsc", "components:\n  gvisor: {version: 20250512, shim: false, installDir: /usr/bin, sha256: {arm64: " + pinARM64 + "}}\n", "arm64", []Artifact{
			withPin(plain("gvisor/runsc", "components.gvisor", gcsGVisor+"20250512/aarch64/runsc",
				sha512File(gcsGVisor+"20250512/aarch64/runsc.sha512", "runsc"), 256<<20, "/usr/bin/runsc", 0o755), pinARM64),
		}},
		{"crictl amd64: bare-hash .sha256", "components:\n  crictl: {version: 1.33.0}\n", "amd64", []Artifact{
			archive("crictl", "components.crictl", ghCrictl+"v1.33.0/crictl-v1.33.0-linux-amd64.tar.gz",
				sha256File(ghCrictl+"v1.33.0/crictl-v1.33.0-linux-amd64.tar.gz.sha256", "crictl-v1.33.0-linux-amd64.tar.gz"),
				128<<20, map[string]string{"crictl": "/usr/local/bin/crictl"}),
		}},
		{"crictl arm64", "components:\n  crictl: {version: 1.33.0, installDir: /opt/bin}\n", "arm64", []Artifact{
			archive("crictl", "components.crictl", ghCrictl+"v1.33.0/crictl-v1.33.0-linux-arm64.tar.gz",
				sha256File(ghCrictl+"v1.33.0/crictl-v1.33.0-linux-arm64.tar.gz.sha256", "crictl-v1.33.0-linux-arm64.tar.gz"),
				128<<20, map[string]string{"crictl": "/opt/bin/crictl"}),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkArtifacts(t, expandSpec(t, tt.src, tt.arch), tt.want)
		})
	}
}

func TestExpandOrder(t *testing.T) {
	// Keys in the file in reverse order; expansion order is fixed.
	src := `downloads:
- {url: "https://example.com/a", path: /opt/a, sha256: ` + pinAMD64 + `}
- {url: "https://example.com/b", path: /opt/b, sha256: ` + pinAMD64 + `}
components:
  crictl: {version: 1.33.0}
  gvisor: {version: "20250512"}
  cni: {version: 1.7.1}
  runc: {version: 1.3.0}
  containerd: {version: 2.1.4}
`
	for _, arch := range Arches() {
		var names []string
		for _, a := range expandSpec(t, src, arch) {
			names = append(names, a.Name)
		}
		want := "containerd runc cni gvisor/runsc gvisor/containerd-shim-runsc-v1 crictl downloads[0] downloads[1]"
		if got := strings.Join(names, " "); got != want {
			t.Errorf("%s: order %q, want %q", arch, got, want)
		}
	}
}

func TestExpandMirrors(t *testing.T) {
	src := `mirrors:
- {prefix: "https://github.com/", to: "https://mirror.internal/gh/"}
- {prefix: "https://github.com/opencontainers/", to: "https://oci.internal/"}
- {prefix: "https://example.com/", to: "file:///srv/mirror/"}
components:
  containerd: {version: 2.1.4}
  runc: {version: 1.3.0, keyring: runc}
  gvisor: {version: "20250512", shim: false}
downloads:
- url: https://example.com/tool.tgz
  checksum:
    url: https://example.com/SHA256SUMS
    signature: {url: https://example.com/SHA256SUMS.asc, keyring: runc}
  signature: {url: https://example.com/tool.tgz.asc, keyring: runc}
  extract: {to: /opt/tool}
keyrings:
  runc: {path: /etc/nodeprov/keys/runc.keyring}
`
	as := expandSpec(t, src, "amd64")
	if len(as) != 4 {
		t.Fatalf("got %d artifacts, want 4: %s", len(as), dump(as))
	}
	tests := []struct{ what, got, want string }{
		// The general github.com/ mirror.
		{"containerd url", as[0].URL, "https://mirror.internal/gh/containerd/containerd/releases/download/v2.1.4/containerd-2.1.4-linux-amd64.tar.gz"},
		{"containerd upstream", as[0].Upstream, ghContainerd + "v2.1.4/containerd-2.1.4-linux-amd64.tar.gz"},
		{"containerd checksum", as[0].Checksum.URL, "https://mirror.internal/gh/containerd/containerd/releases/download/v2.1.4/containerd-2.1.4-linux-amd64.tar.gz.sha256sum"},
		// The longer prefix wins for runc, for every URL.
		{"runc url", as[1].URL, "https://oci.internal/runc/releases/download/v1.3.0/runc.amd64"},
		{"runc upstream", as[1].Upstream, ghRunc + "v1.3.0/runc.amd64"},
		{"runc checksum", as[1].Checksum.URL, "https://oci.internal/runc/releases/download/v1.3.0/runc.sha256sum"},
		{"runc checksum clearsigned", as[1].Checksum.Signature.URL, ""},
		{"runc signature", as[1].Signature.URL, "https://oci.internal/runc/releases/download/v1.3.0/runc.amd64.asc"},
		{"runc checksum entry", as[1].Checksum.Name, "runc.amd64"},
		// No mirror matches storage.googleapis.com.
		{"gvisor url", as[2].URL, gcsGVisor + "20250512/x86_64/runsc"},
		{"gvisor upstream", as[2].Upstream, gcsGVisor + "20250512/x86_64/runsc"},
		// A download: url, checksum, checksum signature and signature.
		{"download url", as[3].URL, "file:///srv/mirror/tool.tgz"},
		{"download upstream", as[3].Upstream, "https://example.com/tool.tgz"},
		{"download checksum", as[3].Checksum.URL, "file:///srv/mirror/SHA256SUMS"},
		{"download checksum signature", as[3].Checksum.Signature.URL, "file:///srv/mirror/SHA256SUMS.asc"},
		{"download signature", as[3].Signature.URL, "file:///srv/mirror/tool.tgz.asc"},
		{"download checksum entry", as[3].Checksum.Name, "tool.tgz"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.what, tt.got, tt.want)
		}
	}
}

func TestMirrorURL(t *testing.T) {
	ms := []Mirror{
		{Prefix: "https://a/", To: "https://m1/"},
		{Prefix: "https://a/b/c/", To: "https://m3/"},
		{Prefix: "https://a/b/", To: "https://m2/"},
	}
	tests := []struct{ in, want string }{
		{"https://a/x", "https://m1/x"},
		{"https://a/b/x", "https://m2/x"},
		{"https://a/b/c/x", "https://m3/x"},
		{"https://a/bc/x", "https://m1/bc/x"},
		{"https://other/x", "https://other/x"},
		{"http://a/x", "http://a/x"},
	}
	for _, tt := range tests {
		if got := mirrorURL(ms, tt.in); got != tt.want {
			t.Errorf("mirrorURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := mirrorURL(nil, "https://a/x"); got != "https://a/x" {
		t.Errorf("no mirrors: %q", got)
	}
}

func TestExpandBaseURL(t *testing.T) {
	src := `mirrors:
- {prefix: "https://artifacts.internal/", to: "https://cache.internal/"}
components:
  containerd: {version: 2.1.4, baseURL: "https://artifacts.internal/containerd/v2.1.4"}
  runc: {version: 1.3.0, baseURL: "https://artifacts.internal/runc/1.3.0/", keyring: runc}
  cni: {version: 1.7.1, baseURL: "file:///srv/cni", plugins: [bridge]}
  gvisor: {version: "20250512", baseURL: "https://artifacts.internal/gvisor/20250512"}
  crictl: {version: 1.33.0, baseURL: "https://artifacts.internal/crictl"}
keyrings:
  runc: {path: /etc/nodeprov/keys/runc.keyring}
`
	type urls struct{ upstream, url, checksum, signature string }
	tests := []struct {
		arch string
		want []urls
	}{
		{"amd64", []urls{
			{"https://artifacts.internal/containerd/v2.1.4/containerd-2.1.4-linux-amd64.tar.gz",
				"https://cache.internal/containerd/v2.1.4/containerd-2.1.4-linux-amd64.tar.gz",
				"https://cache.internal/containerd/v2.1.4/containerd-2.1.4-linux-amd64.tar.gz.sha256sum", ""},
			{"https://artifacts.internal/runc/1.3.0/runc.amd64",
				"https://cache.internal/runc/1.3.0/runc.amd64",
				"https://cache.internal/runc/1.3.0/runc.sha256sum",
				"https://cache.internal/runc/1.3.0/runc.amd64.asc"},
			{"file:///srv/cni/cni-plugins-linux-amd64-v1.7.1.tgz",
				"file:///srv/cni/cni-plugins-linux-amd64-v1.7.1.tgz",
				"file:///srv/cni/cni-plugins-linux-amd64-v1.7.1.tgz.sha256", ""},
			{"https://artifacts.internal/gvisor/20250512/x86_64/runsc",
				"https://cache.internal/gvisor/20250512/x86_64/runsc",
				"https://cache.internal/gvisor/20250512/x86_64/runsc.sha512", ""},
			{"https://artifacts.internal/gvisor/20250512/x86_64/containerd-shim-runsc-v1",
				"https://cache.internal/gvisor/20250512/x86_64/containerd-shim-runsc-v1",
				"https://cache.internal/gvisor/20250512/x86_64/containerd-shim-runsc-v1.sha512", ""},
			{"https://artifacts.internal/crictl/crictl-v1.33.0-linux-amd64.tar.gz",
				"https://cache.internal/crictl/crictl-v1.33.0-linux-amd64.tar.gz",
				"https://cache.internal/crictl/crictl-v1.33.0-linux-amd64.tar.gz.sha256", ""},
		}},
		{"arm64", []urls{
			{"https://artifacts.internal/containerd/v2.1.4/containerd-2.1.4-linux-arm64.tar.gz",
				"https://cache.internal/containerd/v2.1.4/containerd-2.1.4-linux-arm64.tar.gz",
				"https://cache.internal/containerd/v2.1.4/containerd-2.1.4-linux-arm64.tar.gz.sha256sum", ""},
			{"https://artifacts.internal/runc/1.3.0/runc.arm64",
				"https://cache.internal/runc/1.3.0/runc.arm64",
				"https://cache.internal/runc/1.3.0/runc.sha256sum",
				"https://cache.internal/runc/1.3.0/runc.arm64.asc"},
			{"file:///srv/cni/cni-plugins-linux-arm64-v1.7.1.tgz",
				"file:///srv/cni/cni-plugins-linux-arm64-v1.7.1.tgz",
				"file:///srv/cni/cni-plugins-linux-arm64-v1.7.1.tgz.sha256", ""},
			{"https://artifacts.internal/gvisor/20250512/aarch64/runsc",
				"https://cache.internal/gvisor/20250512/aarch64/runsc",
				"https://cache.internal/gvisor/20250512/aarch64/runsc.sha512", ""},
			{"https://artifacts.internal/gvisor/20250512/aarch64/containerd-shim-runsc-v1",
				"https://cache.internal/gvisor/20250512/aarch64/containerd-shim-runsc-v1",
				"https://cache.internal/gvisor/20250512/aarch64/containerd-shim-runsc-v1.sha512", ""},
			{"https://artifacts.internal/crictl/crictl-v1.33.0-linux-arm64.tar.gz",
				"https://cache.internal/crictl/crictl-v1.33.0-linux-arm64.tar.gz",
				"https://cache.internal/crictl/crictl-v1.33.0-linux-arm64.tar.gz.sha256", ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.arch, func(t *testing.T) {
			as := expandSpec(t, src, tt.arch)
			var got []urls
			for _, a := range as {
				u := urls{a.Upstream, a.URL, a.Checksum.URL, ""}
				if a.Signature != nil {
					u.signature = a.Signature.URL
				}
				got = append(got, u)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %s\nwant %s", dump(got), dump(tt.want))
			}
		})
	}
}

func TestExpandDownloads(t *testing.T) {
	src := `downloads:
- url: https://example.com/tool-1.2.tar.gz
  sha256: ` + pinAMD64 + `
  extract: {files: {bin/tool: /usr/local/bin/tool}}
- url: https://example.com/plugins-1.0.tgz?token=x
  checksum: {url: https://example.com/plugins-1.0.tgz.sha512, algorithm: sha512}
  extract: {to: /opt/cni/bin, include: [bridge, host-local], strip: 1}
  maxSize: 100Mi
- url: https://example.com/dl/runc.amd64
  path: /usr/local/sbin/runc
  mode: "0755"
  checksum: {url: https://example.com/dl/runc.sha256sum, signature: {keyring: runc}}
  signature: {url: https://example.com/dl/runc.amd64.asc, keyring: runc}
- url: file:///srv/files/motd%20text
  sha512: ` + strings.Repeat("c", 128) + `
  path: /etc/motd
keyrings:
  runc: {path: /etc/nodeprov/keys/runc.keyring}
`
	want := []Artifact{
		{Name: "downloads[0]", SpecPath: "downloads[0]", URL: "https://example.com/tool-1.2.tar.gz", Upstream: "https://example.com/tool-1.2.tar.gz",
			SHA256: pinAMD64, Install: Install{Files: map[string]string{"bin/tool": "/usr/local/bin/tool"}}},
		{Name: "downloads[1]", SpecPath: "downloads[1]", URL: "https://example.com/plugins-1.0.tgz?token=x", Upstream: "https://example.com/plugins-1.0.tgz?token=x",
			Checksum: &ChecksumRef{URL: "https://example.com/plugins-1.0.tgz.sha512", Algorithm: "sha512", Name: "plugins-1.0.tgz"},
			MaxSize:  100 << 20,
			Install:  Install{To: "/opt/cni/bin", Include: []string{"bridge", "host-local"}, Strip: 1}},
		{Name: "downloads[2]", SpecPath: "downloads[2]", URL: "https://example.com/dl/runc.amd64", Upstream: "https://example.com/dl/runc.amd64",
			Checksum:  &ChecksumRef{URL: "https://example.com/dl/runc.sha256sum", Name: "runc.amd64", Signature: &SignatureRef{Keyring: "runc"}},
			Signature: &SignatureRef{URL: "https://example.com/dl/runc.amd64.asc", Keyring: "runc"},
			Install:   Install{Path: "/usr/local/sbin/runc", Mode: 0o755}},
		{Name: "downloads[3]", SpecPath: "downloads[3]", URL: "file:///srv/files/motd%20text", Upstream: "file:///srv/files/motd%20text",
			SHA512: strings.Repeat("c", 128), Install: Install{Path: "/etc/motd", Mode: 0o644}},
	}
	for _, arch := range Arches() {
		t.Run(arch, func(t *testing.T) {
			// Downloads do not depend on the architecture.
			checkArtifacts(t, expandSpec(t, src, arch), want)
		})
	}
}

func TestInstallArchive(t *testing.T) {
	tests := []struct {
		in   Install
		want bool
	}{
		{Install{Path: "/a", Mode: 0o755}, false},
		{Install{Files: map[string]string{"a": "/a"}}, true},
		{Install{To: "/opt"}, true},
		{Install{}, false},
	}
	for _, tt := range tests {
		if got := tt.in.Archive(); got != tt.want {
			t.Errorf("%+v.Archive() = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestExpandErrors(t *testing.T) {
	tests := []struct {
		name string
		node *Node
		arch string
		want string
	}{
		{"unknown arch", &Node{}, "riscv64", `unsupported architecture "riscv64": expected one of amd64, arm64`},
		{"gvisor naming is not accepted", &Node{}, "x86_64", `unsupported architecture "x86_64"`},
		{"empty arch", &Node{}, "", `unsupported architecture ""`},
		{"containerd outside the catalog", &Node{Components: Components{Containerd: &ContainerdComponent{Release: Release{Version: "1.5.18"}}}}, "amd64",
			"components.containerd: containerd 1.5.18 is not in the catalog"},
		{"cni outside the catalog", &Node{Components: Components{CNI: &CNIComponent{Release: Release{Version: "0.9.1"}}}}, "amd64",
			"components.cni: CNI plugins 0.9.1 is not in the catalog"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Expand(tt.node, tt.arch)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Expand error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestExpandNodeInCode checks that a Node built in Go, without Load's
// defaults, expands with the catalog's defaults and is not modified.
func TestExpandNodeInCode(t *testing.T) {
	n := &Node{Components: Components{
		Containerd: &ContainerdComponent{Release: Release{Version: "2.1.4"}},
		Runc:       &RuncComponent{Release: Release{Version: "1.3.0"}},
		CNI:        &CNIComponent{Release: Release{Version: "1.7.1"}, Plugins: []string{"bridge"}},
		GVisor:     &GVisorComponent{Release: Release{Version: "20250512"}},
		Crictl:     &CrictlComponent{Release: Release{Version: "1.33.0"}},
	}}
	before := dump(n)
	as, err := Expand(n, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range as {
		if a.Install.Path != "" {
			got = append(got, a.Install.Path)
		}
		for _, m := range slices.Sorted(maps.Keys(a.Install.Files)) {
			got = append(got, a.Install.Files[m])
		}
	}
	want := []string{
		"/usr/local/bin/containerd", "/usr/local/bin/containerd-shim-runc-v2", "/usr/local/bin/containerd-stress", "/usr/local/bin/ctr",
		"/usr/local/sbin/runc", "/opt/cni/bin/bridge", "/usr/local/bin/runsc", "/usr/local/bin/containerd-shim-runsc-v1", "/usr/local/bin/crictl",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("targets %q, want %q", got, want)
	}
	if after := dump(n); after != before {
		t.Errorf("Expand modified the node:\n%s\nvs\n%s", before, after)
	}
}

// TestExpandIsPure checks that expanding twice gives equal, independent
// results: mirrors are applied to copies, never to the spec.
func TestExpandIsPure(t *testing.T) {
	src := `mirrors: [{prefix: "https://h/", to: "https://m/h/"}]
components: {runc: {version: 1.3.0, keyring: k}}
downloads:
- {url: "https://h/x", path: /x, checksum: {url: "https://h/s", signature: {url: "https://h/s.asc", keyring: k}}, signature: {url: "https://h/x.asc", keyring: k}}
keyrings: {k: {path: /k}}
`
	doc, err := Load("t.yaml", []byte(header+src))
	if err != nil {
		t.Fatal(err)
	}
	a, err := Expand(doc.Spec, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Expand(doc.Spec, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	checkArtifacts(t, b, a)
	if d := doc.Spec.Downloads[0]; d.Checksum.Signature.URL != "https://h/s.asc" || d.Signature.URL != "https://h/x.asc" || d.URL != "https://h/x" {
		t.Errorf("the spec's URLs were rewritten: %+v", d)
	}
	if got := b[1].Checksum.Signature.URL; got != "https://m/h/s.asc" {
		t.Errorf("second expansion mirrored twice or not at all: %q", got)
	}
}

func TestExpandExamples(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, f := range files {
		for _, arch := range Arches() {
			t.Run(filepath.Base(f)+"/"+arch, func(t *testing.T) {
				doc, err := LoadFile(f, nil)
				if err != nil {
					t.Fatal(err)
				}
				as, err := Expand(doc.Spec, arch)
				if err != nil {
					t.Fatalf("Expand: %v", err)
				}
				targets := map[string]string{}
				for _, a := range as {
					if a.URL == "" || a.Upstream == "" || a.Name == "" || a.SpecPath == "" {
						t.Errorf("%s: incomplete artifact %+v", a.Name, a)
					}
					// Kata, Docker and cri-dockerd publish no checksum
					// file: an example pins the architectures its author
					// had the asset of, and says so (validation insists
					// on at least one pin).
					pinOnly := a.Checksum == nil && strings.HasPrefix(a.SpecPath, "components.")
					if a.SHA256 == "" && a.SHA512 == "" && a.Checksum == nil && !pinOnly {
						t.Errorf("%s: no digest and no checksum file", a.Name)
					}
					if !a.Install.Archive() && a.Install.Path == "" {
						t.Errorf("%s: no install target", a.Name)
					}
					for _, tgt := range append(sortedValues(a.Install.Files), a.Install.Path) {
						if tgt == "" {
							continue
						}
						if prev, dup := targets[tgt]; dup {
							t.Errorf("%s installed by %s and %s", tgt, prev, a.Name)
						}
						targets[tgt] = a.Name
					}
				}
			})
		}
	}
}

func sortedValues(m map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[k])
	}
	return out
}

func TestHostArch(t *testing.T) {
	got := HostArch()
	if got != runtime.GOARCH {
		t.Errorf("HostArch() = %q, want %q", got, runtime.GOARCH)
	}
	if runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64" {
		if _, err := Expand(&Node{}, got); err != nil {
			t.Errorf("Expand(HostArch()): %v", err)
		}
	}
	a := Arches()
	a[0] = "x"
	if Arches()[0] != "amd64" {
		t.Error("Arches() returns shared state")
	}
}

func TestParseSemver(t *testing.T) {
	tests := []struct {
		in      string
		ok      bool
		atLeast [3]int
		want    bool
	}{
		{"2.1.4", true, [3]int{2, 0, 0}, true},
		{"1.7.27", true, [3]int{1, 8, 0}, false},
		{"1.4.0", true, [3]int{1, 4, 0}, true},
		{"1.3.9", true, [3]int{1, 4, 0}, false},
		{"1.2.0-rc.1", true, [3]int{1, 2, 0}, true},
		{"10.0.0", true, [3]int{9, 9, 9}, true},
		{"1.2", false, [3]int{}, false},
		{"01.2.3", false, [3]int{}, false},
		{"1.x.3", false, [3]int{}, false},
		{"", false, [3]int{}, false},
	}
	for _, tt := range tests {
		v, ok := parseSemver(tt.in)
		if ok != tt.ok {
			t.Errorf("parseSemver(%q) ok = %v, want %v", tt.in, ok, tt.ok)
			continue
		}
		if ok && v.atLeast(tt.atLeast[0], tt.atLeast[1], tt.atLeast[2]) != tt.want {
			t.Errorf("%q.atLeast(%v) = %v, want %v", tt.in, tt.atLeast, !tt.want, tt.want)
		}
	}
}

func TestURLBase(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://h/a/b.tgz", "b.tgz"},
		{"https://h/a/b.tgz?x=1#f", "b.tgz"},
		{"file:///srv/x%20y", "x y"},
		{"https://h/", "/"},
	}
	for _, tt := range tests {
		if got := urlBase(tt.in); got != tt.want {
			t.Errorf("urlBase(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestComponentDiagnostics covers the validation of component fields.
func TestComponentDiagnostics(t *testing.T) {
	const kr = "keyrings:\n  runc: {path: /k}\n"
	tests := []struct {
		name string
		src  string
		want []string // substrings, one per diagnostic, in order
	}{
		{"all overrides valid", `components:
  containerd: {version: 2.1.4, static: true, binaries: [containerd, ctr], installDir: /opt/bin, maxSize: 1Gi, baseURL: "https://m/containerd/v2.1.4", sha256: {amd64: ` + pinAMD64 + `}}
  runc: {version: 1.3.0, keyring: runc, path: /usr/bin/runc, baseURL: "file:///srv/runc"}
  cni: {version: 1.7.1, plugins: [bridge, tap]}
  gvisor: {version: "20260817.0", shim: false}
  crictl: {version: 1.33.0, sha256: {arm64: ` + pinARM64 + `}}
` + kr, nil},
		{"runc keyring undefined", "components:\n  runc: {version: 1.3.0, keyring: runk}\n" + kr,
			[]string{`4:35: components.runc.keyring: keyring "runk" is not defined in keyrings; did you mean "runc"?`}},
		{"containerd before 1.6", "components:\n  containerd: {version: 1.5.18}\n",
			[]string{`4:25: components.containerd.version: containerd 1.5.18 is not in the catalog, which knows 1.6, 1.7 and 2.x`}},
		{"containerd 3.x", "components:\n  containerd: {version: 3.0.0}\n",
			[]string{`components.containerd.version: containerd 3.0.0 is not in the catalog`}},
		{"containerd 1.7 binary on 2.x", "components:\n  containerd: {version: 2.1.4, binaries: [containerd-shim-runc-v1, ctr, ctr]}\n",
			[]string{`components.containerd.binaries[0]: unknown containerd binary "containerd-shim-runc-v1"; did you mean "containerd-shim-runc-v2"?`,
				`components.containerd.binaries[2]: containerd binary "ctr" is listed twice`}},
		{"cni before 1.0", "components:\n  cni: {version: 0.9.1}\n",
			[]string{`components.cni.version: CNI plugins 0.9.1 is not in the catalog, which knows 1.0.0 and later`}},
		{"cni plugin typo", "components:\n  cni: {version: 1.7.1, plugins: [bridg]}\n",
			[]string{`components.cni.plugins[0]: unknown CNI plugin "bridg"; did you mean "bridge"?`}},
		{"gvisor not a date", "components:\n  gvisor: {version: \"20251340\"}\n",
			[]string{`components.gvisor.version: invalid gVisor version "20251340": 20251340 is not a date`}},
		{"pin for an unknown arch", "components:\n  runc: {version: 1.3.0, sha256: {x86_64: " + pinAMD64 + "}}\n",
			[]string{`4:35: components.runc.sha256.x86_64: unknown architecture "x86_64": expected amd64 or arm64`}},
		{"bad pin", "components:\n  runc: {version: 1.3.0, sha256: {amd64: abc}}\n",
			[]string{`4:42: components.runc.sha256.amd64: invalid digest: expected 64 lower-case hex characters, got 3`}},
		{"baseURL with query", "components:\n  crictl: {version: 1.33.0, baseURL: \"https://m/c?sig=1\"}\n",
			[]string{`components.crictl.baseURL: baseURL must not have a query or fragment`}},
		{"baseURL ftp", "components:\n  crictl: {version: 1.33.0, baseURL: \"ftp://m/c\"}\n",
			[]string{`components.crictl.baseURL: URL "ftp://m/c": unsupported scheme "ftp"`}},
		{"download over a component binary", "components:\n  containerd: {version: 2.1.4}\ndownloads:\n- {url: \"https://h/ctr\", sha256: " + pinAMD64 + ", path: /usr/local/bin/ctr}\n",
			[]string{`6:106: downloads[0].path: /usr/local/bin/ctr is also installed by components.containerd`}},
		{"download member over a component binary", "components:\n  crictl: {version: 1.33.0}\ndownloads:\n- url: https://h/c.tgz\n  sha256: " + pinAMD64 + "\n  extract: {files: {crictl: /usr/local/bin/crictl}}\n",
			[]string{`downloads[0].extract.files.crictl: /usr/local/bin/crictl is also installed by components.crictl`}},
		{"two components, one target", "components:\n  containerd: {version: 2.1.4}\n  runc: {version: 1.3.0, path: /usr/local/bin/ctr}\n",
			[]string{`5:32: components.runc.path: /usr/local/bin/ctr is also installed by components.containerd`}},
		{"gvisor shim and crictl dir collide only when both install the same name", "components:\n  gvisor: {version: \"20250512\", installDir: /opt/bin}\n  crictl: {version: 1.33.0, installDir: /opt/bin}\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantDiags(t, header+tt.src, tt.want) })
	}
}

// TestExpandImages: image archives expand after the downloads into
// artifacts installed in ImagesDir under their file names (mode 0644),
// verified and mirrored like any artifact, so fetch, lock, the cache and
// the trust policy treat them like every other; two archives with one
// file name are refused.
func TestExpandImages(t *testing.T) {
	src := `mirrors:
- {prefix: "https://images.example.com/", to: "https://mirror.internal/images/"}
downloads:
- {url: "https://example.com/a", path: /opt/a, sha256: ` + pinAMD64 + `}
images:
- {url: "https://images.example.com/v1/pause-3.10.tar?x=y", sha256: ` + pinAMD64 + `}
- url: https://images.example.com/busybox.tar
  checksum: {url: https://images.example.com/busybox.tar.sha256}
`
	as := expandSpec(t, src, "amd64")
	if len(as) != 3 || as[1].Name != "images[0]" || as[2].Name != "images[1]" {
		t.Fatalf("artifacts %s", dump(as))
	}
	for i, want := range []string{"/var/lib/nodeprov/images/pause-3.10.tar", "/var/lib/nodeprov/images/busybox.tar"} {
		a := as[i+1]
		if a.Install.Path != want || a.Install.Mode != 0o644 || !strings.HasPrefix(a.URL, "https://mirror.internal/images/") {
			t.Errorf("images[%d]: %s", i, dump(a))
		}
	}
	if as[1].SHA256 != pinAMD64 || as[2].Checksum == nil || as[2].Checksum.Name != "busybox.tar" {
		t.Errorf("verification sources lost: %s", dump(as[1:]))
	}
	ds := diags(t, header+`images:
- {url: "https://a.example/x/pause.tar", sha256: `+pinAMD64+`}
- {url: "https://b.example/y/pause.tar", sha256: `+pinAMD64+`}
`)
	if len(ds) != 1 || !strings.Contains(ds[0], "images[1].url") {
		t.Errorf("two archives named pause.tar: diagnostics %q, want one at images[1].url", ds)
	}
}

// wantDiags loads src and checks its diagnostics, in order, each against a
// substring of want.
func wantDiags(t *testing.T, src string, want []string) {
	t.Helper()
	got := diags(t, src)
	if len(got) != len(want) {
		t.Fatalf("got %d diagnostics, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i, w := range want {
		if !strings.Contains(got[i], w) {
			t.Errorf("diagnostic %d = %q, want it to contain %q", i, got[i], w)
		}
	}
}
