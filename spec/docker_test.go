package spec

import (
	"maps"
	"testing"
)

// TestExpandDocker: Docker's static tarball and cri-dockerd's release
// tarball expand to their upstream URLs, verified by the spec's pin alone
// (neither upstream publishes a checksum file); with containerd: bundled
// the tarball's containerd and runc go to bundledDir, never beside the
// managed ones.
func TestExpandDocker(t *testing.T) {
	const dockerDir = "https://download.docker.com/linux/static/stable/"
	const criDir = "https://github.com/Mirantis/cri-dockerd/releases/download/"
	own := members("docker/", "/usr/local/bin", DockerBinaries...)
	bundled := members("docker/", "/opt/docker", DockerBundled...)
	maps.Copy(bundled, own)
	pinned := func(a Artifact, pin string) Artifact { a.Checksum, a.SHA256 = nil, pin; return a }
	tests := []struct {
		name, src, arch string
		want            []Artifact
	}{
		{"managed amd64", "components:\n  docker: {version: 28.5.2, sha256: {amd64: " + pinAMD64 + "}}\n", "amd64", []Artifact{
			pinned(archive("docker", "components.docker", dockerDir+"x86_64/docker-28.5.2.tgz", nil, 512<<20, own), pinAMD64)}},
		{"bundled arm64", "components:\n  docker: {version: 28.5.2, containerd: bundled, bundledDir: /opt/docker, sha256: {arm64: " + pinARM64 + "}}\n", "arm64", []Artifact{
			pinned(archive("docker", "components.docker", dockerDir+"aarch64/docker-28.5.2.tgz", nil, 512<<20, bundled), pinARM64)}},
		{"cri-dockerd", "components:\n  criDockerd: {version: 0.4.3, sha256: {amd64: " + pinAMD64 + ", arm64: " + pinARM64 + "}}\n", "arm64", []Artifact{
			pinned(archive("criDockerd", "components.criDockerd", criDir+"v0.4.3/cri-dockerd-0.4.3.arm64.tgz", nil, 256<<20,
				map[string]string{"cri-dockerd/cri-dockerd": "/usr/local/bin/cri-dockerd"}), pinARM64)}},
		{"baseURL replaces the stable directory", "components:\n  docker: {version: 28.5.2, baseURL: \"https://m.example/docker\", sha256: {amd64: " + pinAMD64 + "}}\n", "amd64", []Artifact{
			pinned(archive("docker", "components.docker", "https://m.example/docker/x86_64/docker-28.5.2.tgz", nil, 512<<20, own), pinAMD64)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkArtifacts(t, expandSpec(t, tt.src, tt.arch), tt.want)
		})
	}
}

// TestExpandDockerUnpinnedArch: a pin for one architecture does not
// verify another. The other still expands, with no digest, so that an
// operator's lock line can pin it; without one its fetch fails for want of
// a digest.
func TestExpandDockerUnpinnedArch(t *testing.T) {
	as := expandSpec(t, "components:\n  criDockerd: {version: 0.4.3, sha256: {amd64: "+pinAMD64+"}}\n", "arm64")
	if len(as) != 1 || as[0].SHA256 != "" || as[0].Checksum != nil {
		t.Fatalf("arm64 without a pin: %s", dump(as))
	}
}

func loadString(t *testing.T, src string) *Document {
	t.Helper()
	doc, err := Load("t.yaml", []byte(src))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return doc
}

func TestDockerDiagnostics(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"valid", `components:
  containerd: {version: 2.1.4}
  cni: {version: 1.7.1}
  docker: {version: 28.5.2, sha256: {amd64: ` + pinAMD64 + `}}
  criDockerd: {version: 0.4.3, sha256: {amd64: ` + pinAMD64 + `}}
containerd:
  cni: {network: none}
docker:
  cgroupDriver: systemd
  registryMirrors: ["https://mirror.example"]
  insecureRegistries: [10.0.0.0/8, "registry.local:5000"]
  logOpts: {max-size: 10m}
  settings: {iptables: false}
  cri: {sandboxImage: "registry.k8s.io/pause:3.10"}
`, nil},
		{"no pins", "components:\n  docker: {version: 28.5.2}\n  criDockerd: {version: 0.4.3}\n",
			[]string{`components.docker: Docker publishes no checksum file for its static releases (download.docker.com/linux/static): pin the tarball's SHA-256`,
				`components.criDockerd: cri-dockerd's GitHub releases publish no checksum file: pin`}},
		{"docker before 20.10", "components:\n  docker: {version: 19.3.15, sha256: {amd64: " + pinAMD64 + "}}\n",
			[]string{`components.docker.version: Docker 19.3.15 is not in the catalog, which knows 20.10 and later`}},
		{"leading v", "components:\n  criDockerd: {version: v0.4.3, sha256: {amd64: " + pinAMD64 + "}}\n",
			[]string{`components.criDockerd.version: write the criDockerd version without the leading v: "0.4.3"`}},
		{"bundled over the managed containerd", "components:\n  containerd: {version: 2.1.4}\n  docker: {version: 28.5.2, containerd: bundled, bundledDir: /usr/local/bin, sha256: {amd64: " + pinAMD64 + "}}\n",
			[]string{`components.docker.bundledDir: /usr/local/bin/containerd is also installed by components.containerd`,
				`components.docker.bundledDir: /usr/local/bin/containerd-shim-runc-v2 is also installed by components.containerd`,
				`components.docker.bundledDir: /usr/local/bin/ctr is also installed by components.containerd`}},
		{"bad containerd choice", "components:\n  docker: {version: 28.5.2, containerd: host, sha256: {amd64: " + pinAMD64 + "}}\n",
			[]string{`components.docker.containerd: invalid value "host": expected one of managed, bundled`}},
		{"daemon settings", `docker:
  dataRoot: var/lib/docker
  registryMirrors: ["file:///srv/mirror"]
  insecureRegistries: ["http://r:5000"]
  logDriver: "JSON File"
`, []string{`docker.dataRoot: path "var/lib/docker" must be absolute`,
			`docker.registryMirrors[0]: URL "file:///srv/mirror"`,
			`docker.insecureRegistries[0]: invalid insecure registry "http://r:5000": expected host, host:port or a CIDR`,
			`docker.logDriver: invalid log driver "JSON File"`}},
		{"two bridge conflists", "components:\n  cni: {version: 1.7.1}\ncontainerd:\n  cni: {network: bridge}\ndocker:\n  cri: {}\n",
			[]string{`containerd.cni.network: docker.cri makes Docker the node's CRI, and its bridge network is written to the same CNI directory`}},
		{"cri settings", "docker:\n  cri: {endpoint: run/cri.sock, sandboxImage: \"Pause:3\", cni: {subnet: 10.1.0.0}}\n",
			[]string{`docker.cri.endpoint: path "run/cri.sock" must be absolute`,
				`docker.cri.sandboxImage: invalid image reference "Pause:3"`,
				`docker.cri.cni.subnet: invalid subnet "10.1.0.0"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantDiags(t, header+tt.src, tt.want) })
	}
}

// TestDockerCRIDefaults: with docker.cri, the CNI component's bridge goes
// to cri-dockerd and containerd's stays none; the node's CRI endpoint is
// cri-dockerd's socket.
func TestDockerCRIDefaults(t *testing.T) {
	doc := loadString(t, header+"components:\n  containerd: {version: 2.1.4}\n  cni: {version: 1.7.1}\ndocker:\n  cri: {}\n")
	n := doc.Spec
	if got := n.Containerd.CNI.Network; got != "none" {
		t.Errorf("containerd.cni.network = %q, want none", got)
	}
	if got := n.Docker.CRI.CNI.Network; got != "bridge" {
		t.Errorf("docker.cri.cni.network = %q, want bridge", got)
	}
	if got := n.CRIEndpoint(); got != "unix:///run/cri-dockerd.sock" {
		t.Errorf("CRIEndpoint = %q", got)
	}
	if d := n.Docker; d.CgroupDriver != "auto" || d.DataRoot != "/var/lib/docker" || d.LogDriver != "json-file" || d.CRI.SandboxImage != "registry.k8s.io/pause:3.10" {
		t.Errorf("docker defaults: %+v, cri %+v", d, d.CRI)
	}
	doc = loadString(t, header+"components:\n  containerd: {version: 2.1.4}\n  cni: {version: 1.7.1}\n")
	if got := doc.Spec.CRIEndpoint(); got != "unix:///run/containerd/containerd.sock" || doc.Spec.Containerd.CNI.Network != "bridge" {
		t.Errorf("without docker: endpoint %q, containerd network %q", got, doc.Spec.Containerd.CNI.Network)
	}
}
