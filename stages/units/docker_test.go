package units

import (
	"slices"
	"strings"
	"testing"

	"github.com/nodeprov/nodeprov/spec"
)

// dockerNode is a spec with Docker and cri-dockerd, defaults applied as
// Load applies them.
func dockerNode(t *testing.T, extra string) *spec.Node {
	t.Helper()
	doc, err := spec.Load("t.yaml", []byte(`apiVersion: nodeprov/v1alpha1
kind: Node
components:
  docker: {version: 28.5.2, sha256: {amd64: `+strings.Repeat("a", 64)+`}`+extra+`}
  criDockerd: {version: 0.4.3, sha256: {amd64: `+strings.Repeat("b", 64)+`}}
docker:
  cri:
    sandboxImage: registry.example:5000/pause:3.10
    cni: {binDir: /opt/cni/bin, confDir: /etc/cni/docker.d}
`))
	if err != nil {
		t.Fatal(err)
	}
	return doc.Spec
}

// TestDockerUnits: each built-in unit parses as systemd would load it,
// carries upstream's directives, and runs the installed binaries with the
// spec's settings.
func TestDockerUnits(t *testing.T) {
	tests := []struct {
		name     string
		unit     string
		extra    string
		upstream []string // lines that must be present
		exec     string   // ExecStart=, "" for sockets
	}{
		{"dockerd on the managed containerd", DockerUnitName, "", []string{
			"Description=Docker Application Container Engine", "Wants=network-online.target containerd.service",
			"Requires=docker.socket", "Type=notify", "ExecReload=/bin/kill -s HUP $MAINPID", "Delegate=yes",
			"KillMode=process", "OOMScoreAdjust=-500", "Restart=always", "WantedBy=multi-user.target"},
			"/usr/local/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock"},
		{"dockerd with its bundled containerd", DockerUnitName, ", containerd: bundled, bundledDir: /opt/docker/bin, installDir: /opt/docker", []string{
			"Wants=network-online.target", "Environment=PATH=/opt/docker/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			"/opt/docker/dockerd -H fd://"},
		{"docker.socket", DockerSocketName, "", []string{
			"PartOf=docker.service", "ListenStream=/run/docker.sock", "SocketMode=0660", "SocketUser=root",
			"SocketGroup=docker", "WantedBy=sockets.target"}, ""},
		{"cri-dockerd", CriDockerUnitName, "", []string{
			"Description=CRI Interface for Docker Application Container Engine", "After=network-online.target firewalld.service docker.service",
			"Requires=cri-docker.socket", "Type=notify", "Delegate=yes", "KillMode=process", "LimitNOFILE=infinity"},
			"/usr/local/bin/cri-dockerd --container-runtime-endpoint fd:// --network-plugin=cni --cni-bin-dir=/opt/cni/bin --cni-conf-dir=/etc/cni/docker.d --pod-infra-container-image=registry.example:5000/pause:3.10"},
		{"cri-docker.socket", CriDockerSocketName, "", []string{
			"PartOf=cri-docker.service", "ListenStream=/run/cri-dockerd.sock", "SocketGroup=docker"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := builtinContents(dockerNode(t, tt.extra), tt.unit)
			if err != nil || data == nil {
				t.Fatalf("builtinContents(%s) = %v, %v", tt.unit, data, err)
			}
			f, err := parseStrict(tt.unit, data, false)
			if err != nil {
				t.Fatalf("does not parse: %v\n%s", err, data)
			}
			lines := strings.Split(string(data), "\n")
			for _, d := range tt.upstream {
				if !slices.Contains(lines, d) {
					t.Errorf("missing %q in\n%s", d, data)
				}
			}
			if tt.exec == "" {
				return
			}
			if err := checkService([]*unitFile{f}); err != nil {
				t.Fatal(err)
			}
			if got := f.values("Service", "ExecStart"); len(got) != 1 || got[0] != tt.exec {
				t.Errorf("ExecStart = %q\nwant %q", got, tt.exec)
			}
		})
	}
}

// TestCriDockerNeedsCRI: the built-in cri-docker.service takes its flags
// from docker.cri; without it the spec is told what to add.
func TestCriDockerNeedsCRI(t *testing.T) {
	n := dockerNode(t, "")
	n.Docker = nil
	if _, err := builtinContents(n, CriDockerUnitName); err == nil || !strings.Contains(err.Error(), "add docker: {cri: {}}") {
		t.Fatalf("err = %v", err)
	}
	if b, err := builtinContents(n, CriDockerSocketName); b != nil || err != nil {
		t.Fatalf("cri-docker.socket without docker.cri: %q, %v", b, err)
	}
}

// TestDockerRestartsOnDaemonJSON: a daemon.json written earlier in the run
// restarts docker.service, listed in the spec or not; containerd's
// configuration does not.
func TestDockerRestartsOnDaemonJSON(t *testing.T) {
	changed := []string{"/etc/docker/daemon.json", "/etc/containerd/config.toml"}
	if got := earlierReasons(DockerUnitName, changed, nil, nil); !slices.Equal(got, []string{"/etc/docker/daemon.json"}) {
		t.Errorf("docker.service reasons = %q", got)
	}
	if got := earlierReasons(CriDockerUnitName, changed, nil, nil); len(got) != 0 {
		t.Errorf("cri-docker.service reasons = %q", got)
	}
	if got := impliedUnits(dockerNode(t, "")); !slices.Equal(got, []string{DockerUnitName}) {
		t.Errorf("implied units of a Docker node = %q", got)
	}
}
