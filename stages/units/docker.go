package units

import (
	"fmt"
	"path"
	"strings"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// The built-in units of Docker Engine and cri-dockerd, after the units
// upstream ships: moby's contrib/init/systemd (docker.service,
// docker.socket) and cri-dockerd's packaging/systemd (cri-docker.service,
// cri-docker.socket), with ExecStart at the installed binaries.
const (
	DockerUnitName      = "docker.service"
	DockerSocketName    = "docker.socket"
	CriDockerUnitName   = "cri-docker.service"
	CriDockerSocketName = "cri-docker.socket"
)

// DockerSocketGroup owns the Docker and cri-dockerd sockets (SocketGroup=,
// mode 0660), as upstream's units have it; the docker stage makes sure the
// group exists, since systemd refuses to create a socket for a group it
// cannot resolve.
const DockerSocketGroup = "docker"

// DockerAPISocket is where docker.socket listens: dockerd's -H fd:// and
// cri-dockerd's default --docker-endpoint.
const DockerAPISocket = "/run/docker.sock"

// defaultContainerdAddress is containerd.address when the spec has no
// containerd section.
const defaultContainerdAddress = "/run/containerd/containerd.sock"

// systemPath is the PATH systemd gives services; with containerd: bundled,
// dockerd's PATH starts with bundledDir instead, so that it starts the
// tarball's containerd and runs the tarball's runc.
const systemPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// daemonService are the [Service] directives docker.service and
// cri-docker.service share upstream: reload by SIGHUP, restart with a
// start limit, no resource limits (cgroups do the accounting), and
// containers' processes delegated to the daemon, which alone is killed on
// stop.
const daemonService = `ExecReload=/bin/kill -s HUP $MAINPID
RestartSec=2
Restart=always
StartLimitBurst=3
StartLimitInterval=60s
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
Delegate=yes
KillMode=process
`

// DockerUnit renders docker.service for the docker component. With
// containerd: managed, dockerd connects to the node's containerd
// (--containerd) and wants containerd.service; with bundled, dockerd
// supervises the tarball's containerd itself.
func DockerUnit(n *spec.Node) []byte {
	c := n.Components.Docker
	dir := or(c.InstallDir, defaultInstallDir)
	bundled := c.Containerd == "bundled"
	var b strings.Builder
	b.WriteString(plan.ManagedHeader)
	fmt.Fprintf(&b, "# docker.service of Docker Engine %s, ExecStart at the installed binary.\n", c.Version)
	b.WriteString(`[Unit]
Description=Docker Application Container Engine
Documentation=https://docs.docker.com
`)
	if bundled {
		b.WriteString("After=network-online.target docker.socket firewalld.service time-set.target\nWants=network-online.target\n")
	} else {
		b.WriteString("After=network-online.target docker.socket firewalld.service containerd.service time-set.target\nWants=network-online.target containerd.service\n")
	}
	b.WriteString(`Requires=docker.socket

[Service]
Type=notify
`)
	if bundled {
		fmt.Fprintf(&b, "Environment=%s\n", execArg("PATH="+or(c.BundledDir, "/usr/local/lib/docker/bin")+":"+systemPath))
		fmt.Fprintf(&b, "ExecStart=%s -H fd://\n", execArg(path.Join(dir, "dockerd")))
	} else {
		address := defaultContainerdAddress
		if n.Containerd != nil && n.Containerd.Address != "" {
			address = n.Containerd.Address
		}
		fmt.Fprintf(&b, "ExecStart=%s -H fd:// %s\n", execArg(path.Join(dir, "dockerd")), execArg("--containerd="+address))
	}
	b.WriteString("TimeoutStartSec=0\n")
	b.WriteString(daemonService)
	b.WriteString(`OOMScoreAdjust=-500

[Install]
WantedBy=multi-user.target
`)
	return []byte(b.String())
}

// DockerSocket renders docker.socket.
func DockerSocket() []byte {
	return []byte(plan.ManagedHeader + `# docker.socket of Docker Engine.
[Unit]
Description=Docker Socket for the API
PartOf=docker.service

[Socket]
ListenStream=` + DockerAPISocket + `
SocketMode=0660
SocketUser=root
SocketGroup=` + DockerSocketGroup + `

[Install]
WantedBy=sockets.target
`)
}

// CriDockerUnit renders cri-docker.service for the criDockerd component:
// the CRI socket comes from cri-docker.socket (fd://), pods are networked
// by CNI from the directories in docker.cri.cni, and the sandbox image is
// docker.cri.sandboxImage.
func CriDockerUnit(n *spec.Node) []byte {
	c, cri := n.Components.CriDockerd, n.Docker.CRI
	var b strings.Builder
	b.WriteString(plan.ManagedHeader)
	fmt.Fprintf(&b, "# cri-docker.service of cri-dockerd %s, ExecStart at the installed binary.\n", c.Version)
	b.WriteString(`[Unit]
Description=CRI Interface for Docker Application Container Engine
Documentation=https://docs.mirantis.com
After=network-online.target firewalld.service docker.service
Wants=network-online.target
Requires=cri-docker.socket

[Service]
Type=notify
`)
	args := []string{
		path.Join(or(c.InstallDir, defaultInstallDir), "cri-dockerd"),
		"--container-runtime-endpoint", "fd://",
		"--network-plugin=cni",
		"--cni-bin-dir=" + or(cri.CNI.BinDir, "/opt/cni/bin"),
		"--cni-conf-dir=" + or(cri.CNI.ConfDir, "/etc/cni/net.d"),
		"--pod-infra-container-image=" + cri.SandboxImage,
	}
	for i, a := range args {
		args[i] = execArg(a)
	}
	fmt.Fprintf(&b, "ExecStart=%s\n", strings.Join(args, " "))
	b.WriteString("TimeoutSec=0\nLimitNOFILE=infinity\n")
	b.WriteString(daemonService)
	b.WriteString(`
[Install]
WantedBy=multi-user.target
`)
	return []byte(b.String())
}

// CriDockerSocket renders cri-docker.socket, listening on docker.cri's
// endpoint (upstream's %t/cri-dockerd.sock by default).
func CriDockerSocket(cri *spec.DockerCRI) []byte {
	return []byte(plan.ManagedHeader + `# cri-docker.socket of cri-dockerd.
[Unit]
Description=CRI Docker Socket for the API
PartOf=cri-docker.service

[Socket]
ListenStream=` + execArg(or(cri.Endpoint, "/run/cri-dockerd.sock")) + `
SocketMode=0660
SocketUser=root
SocketGroup=` + DockerSocketGroup + `

[Install]
WantedBy=sockets.target
`)
}
