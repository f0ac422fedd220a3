package spec

import (
	"strings"
	"testing"
)

const ghKata = "https://github.com/kata-containers/kata-containers/releases/download/"

// kataArtifact is the kata component's artifact with the default
// directories and the given configuration member.
func kataArtifact(url, pin, config string, more ...string) Artifact {
	files := map[string]string{
		"opt/kata/bin/containerd-shim-kata-v2": "/opt/kata/bin/containerd-shim-kata-v2",
		"opt/kata/bin/kata-runtime":            "/opt/kata/bin/kata-runtime",
		"opt/kata/" + config:                   "/opt/kata/" + config,
	}
	for _, m := range more {
		files["opt/kata/"+m] = "/opt/kata/" + m
	}
	return Artifact{Name: "kata", SpecPath: "components.kata", URL: url, Upstream: url, SHA256: pin, MaxSize: 1 << 30,
		Install: Install{Files: files, Links: map[string]string{
			"/usr/local/bin/containerd-shim-kata-v2": "/opt/kata/bin/containerd-shim-kata-v2",
			"/usr/local/bin/kata-runtime":            "/opt/kata/bin/kata-runtime",
		}}}
}

func TestExpandKata(t *testing.T) {
	pins := "sha256: {amd64: " + pinAMD64 + ", arm64: " + pinARM64 + "}"
	tests := []struct {
		name, src, arch string
		want            Artifact
	}{
		{"default hypervisor qemu", "components:\n  kata: {version: 3.32.0, " + pins + "}\n", "amd64",
			kataArtifact(ghKata+"3.32.0/kata-static-3.32.0-amd64.tar.zst", pinAMD64, "share/defaults/kata-containers/configuration-qemu.toml")},
		{"clh on arm64", "components:\n  kata: {version: 3.32.0, hypervisor: clh, " + pins + "}\n", "arm64",
			kataArtifact(ghKata+"3.32.0/kata-static-3.32.0-arm64.tar.zst", pinARM64, "share/defaults/kata-containers/configuration-clh.toml")},
		{"firecracker with more members", "components:\n  kata: {version: 3.32.0, hypervisor: firecracker, members: [bin/firecracker, ./bin/jailer, bin/kata-runtime], " + pins + "}\n", "amd64",
			kataArtifact(ghKata+"3.32.0/kata-static-3.32.0-amd64.tar.zst", pinAMD64, "share/defaults/kata-containers/configuration-firecracker.toml", "bin/firecracker", "bin/jailer")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkArtifacts(t, expandSpec(t, tt.src, tt.arch), []Artifact{tt.want})
		})
	}
}

// TestExpandKataPinPerArch: an architecture without a pin in the spec
// expands with no digest and no checksum file, so only a lock file pin
// lets it be fetched.
func TestExpandKataPinPerArch(t *testing.T) {
	n := &Node{Components: Components{Kata: &KataComponent{Release: Release{Version: "3.32.0", SHA256: map[string]string{"amd64": pinAMD64}}}}}
	for arch, want := range map[string]string{"amd64": pinAMD64, "arm64": ""} {
		as, err := Expand(n, arch)
		if err != nil {
			t.Fatal(err)
		}
		if len(as) != 1 || as[0].SHA256 != want || as[0].Checksum != nil || as[0].SHA512 != "" {
			t.Errorf("%s: %s", arch, dump(as))
		}
	}
}

// TestKataRuntimeConfigPath: a kata handler without configPath uses the
// configuration the component installs; one with configPath keeps it;
// without the component nothing is defaulted (Kata's own search path).
func TestKataRuntimeConfigPath(t *testing.T) {
	const runtimes = `containerd:
  runtimes:
    kata: {type: io.containerd.kata.v2}
    kata-own: {type: io.containerd.kata.v2, configPath: /etc/kata-containers/configuration.toml}
    runsc: {type: io.containerd.runsc.v1}
`
	for _, tt := range []struct {
		name, components, want string
	}{
		{"qemu", "components:\n  kata: {version: 3.32.0, sha256: {amd64: " + pinAMD64 + "}}\n", "/opt/kata/share/defaults/kata-containers/configuration-qemu.toml"},
		{"clh elsewhere", "components:\n  kata: {version: 3.32.0, hypervisor: clh, installDir: /usr/lib/kata, sha256: {amd64: " + pinAMD64 + "}}\n", "/usr/lib/kata/share/defaults/kata-containers/configuration-clh.toml"},
		{"no component", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := Load("t.yaml", []byte(header+tt.components+runtimes))
			if err != nil {
				t.Fatal(err)
			}
			rts := doc.Spec.Containerd.Runtimes
			if got := rts["kata"].ConfigPath; got != tt.want {
				t.Errorf("kata configPath = %q, want %q", got, tt.want)
			}
			if got := rts["kata-own"].ConfigPath; got != "/etc/kata-containers/configuration.toml" {
				t.Errorf("kata-own configPath = %q, changed", got)
			}
			if got := rts["runsc"].ConfigPath; got != "" {
				t.Errorf("runsc configPath = %q, want it left alone", got)
			}
			if got := doc.Spec.KataRuntimes(); strings.Join(got, ",") != "kata,kata-own" {
				t.Errorf("KataRuntimes() = %v", got)
			}
		})
	}
}

func TestKataDiagnostics(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string
	}{
		{"no pin", "components:\n  kata: {version: 3.32.0}\n",
			[]string{`4:9: components.kata.sha256: Kata Containers publishes no checksum file next to kata-static-<version>-<arch>.tar.zst, so nodeprov cannot verify it without a pin: set sha256 per architecture, e.g. sha256: {amd64: <sha256sum of kata-static-3.32.0-amd64.tar.zst>}`}},
		{"leading v", "components:\n  kata: {version: v3.32.0, sha256: {amd64: " + pinAMD64 + "}}\n",
			[]string{`components.kata.version: write the kata version without the leading v: "3.32.0"`}},
		{"unknown hypervisor", "components:\n  kata: {version: 3.32.0, hypervisor: dragonball, sha256: {amd64: " + pinAMD64 + "}}\n",
			[]string{`components.kata.hypervisor: invalid value "dragonball": expected one of qemu, clh, firecracker`}},
		{"member with the prefix", "components:\n  kata: {version: 3.32.0, members: [opt/kata/bin/qemu-system-x86_64], sha256: {amd64: " + pinAMD64 + "}}\n",
			[]string{`components.kata.members[0]: write members relative to opt/kata/: "bin/qemu-system-x86_64"`}},
		{"link dir in /proc", "components:\n  kata: {version: 3.32.0, linkDir: /proc/bin, sha256: {amd64: " + pinAMD64 + "}}\n",
			[]string{`components.kata.linkDir: /proc/bin is inside /proc`}},
		{"link over crictl", "components:\n  crictl: {version: 1.33.0}\n  kata: {version: 3.32.0, linkDir: /usr/local/bin, sha256: {amd64: " + pinAMD64 + "}}\ndownloads:\n- url: https://example.com/x\n  sha256: " + pinAMD64 + "\n  path: /opt/x\n  links: {/usr/local/bin/kata-runtime: /opt/x}\n",
			[]string{`downloads[0].links["/usr/local/bin/kata-runtime"]: /usr/local/bin/kata-runtime is also installed by components.kata`}},
		{"relative link target", "downloads:\n- url: https://example.com/x\n  sha256: " + pinAMD64 + "\n  path: /opt/x\n  links: {/usr/local/bin/x: x}\n",
			[]string{`downloads[0].links["/usr/local/bin/x"]: link target "x" must be absolute`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := diags(t, header+tt.src)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d diagnostics %q, want %d", len(got), got, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("diagnostic %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}
