package units

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// ContainerdUnitName is the unit that is built in when components.containerd
// is present.
const ContainerdUnitName = "containerd.service"

// defaultInstallDir is components.containerd.installDir when unset.
const defaultInstallDir = "/usr/local/bin"

// ContainerdUnit renders the built-in containerd.service for a containerd
// component: the directives of the unit containerd ships in its release
// (containerd.service in the containerd repository), with ExecStart at the
// component's installed binary. containerd 1.x adds LimitNOFILE=infinity,
// which 2.0 dropped in favour of systemd's default soft/hard limits.
func ContainerdUnit(c *spec.ContainerdComponent) []byte {
	dir := c.InstallDir
	if dir == "" {
		dir = defaultInstallDir
	}
	major := majorVersion(string(c.Version))
	var b strings.Builder
	b.WriteString(plan.ManagedHeader)
	fmt.Fprintf(&b, "# containerd.service of containerd %s, ExecStart at the installed binary.\n", c.Version)
	b.WriteString(`[Unit]
Description=containerd container runtime
Documentation=https://containerd.io
After=network.target local-fs.target dbus.service

[Service]
ExecStartPre=-/sbin/modprobe overlay
`)
	fmt.Fprintf(&b, "ExecStart=%s\n", execArg(path.Join(dir, "containerd")))
	b.WriteString(`
Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=5

# Having non-zero Limit*s causes performance problems due to accounting overhead
# in the kernel. We recommend using cgroups to do container-local accounting.
LimitNPROC=infinity
LimitCORE=infinity
`)
	if major == 1 {
		b.WriteString("LimitNOFILE=infinity\n")
	}
	b.WriteString(`TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
`)
	return []byte(b.String())
}

// majorVersion is the major number of "2.1.4" or "v1.7.27"; 0 when unknown.
func majorVersion(v string) int {
	m, _, _ := strings.Cut(strings.TrimPrefix(v, "v"), ".")
	n, err := strconv.Atoi(m)
	if err != nil {
		return 0
	}
	return n
}

// builtinContents returns the built-in unit file for name, or nil when the
// spec has none for it.
func builtinContents(n *spec.Node, name string) ([]byte, error) {
	switch name {
	case ContainerdUnitName:
		c := n.Components.Containerd
		if c == nil {
			return nil, nil
		}
		if len(c.Binaries) > 0 && !contains(c.Binaries, "containerd") {
			return nil, fmt.Errorf("the built-in %s runs containerd, but components.containerd.binaries does not install it: add containerd to binaries or give the unit's contents", name)
		}
		return ContainerdUnit(c), nil
	case DockerUnitName:
		if n.Components.Docker == nil {
			return nil, nil
		}
		return DockerUnit(n), nil
	case DockerSocketName:
		if n.Components.Docker == nil {
			return nil, nil
		}
		return DockerSocket(), nil
	case CriDockerUnitName:
		if n.Components.CriDockerd == nil {
			return nil, nil
		}
		if !n.DockerCRI() {
			return nil, fmt.Errorf("the built-in %s serves the CRI that docker.cri configures (sandbox image, CNI directories), and the spec has no docker.cri: add docker: {cri: {}} or give the unit's contents", name)
		}
		return CriDockerUnit(n), nil
	case CriDockerSocketName:
		if n.Components.CriDockerd == nil || !n.DockerCRI() {
			return nil, nil
		}
		return CriDockerSocket(n.Docker.CRI), nil
	}
	return nil, nil
}

// impliedUnits are the built-in services whose restarts are due when
// their configuration or binaries change, also when the spec does not
// list them: containerd.service for a configured containerd, docker.service
// for a configured Docker.
func impliedUnits(n *spec.Node) []string {
	var out []string
	if n.Containerd != nil || n.Components.Containerd != nil {
		out = append(out, ContainerdUnitName)
	}
	if n.Docker != nil || n.Components.Docker != nil {
		out = append(out, DockerUnitName)
	}
	return out
}

// configInputs are the configuration a built-in service reads at start: a
// change below dir in this run restarts it, and file written after it
// started (a killed run) restarts it on the next.
func configInputs(name string) (dir, file string) {
	switch name {
	case ContainerdUnitName:
		return ContainerdConfigDir, path.Join(ContainerdConfigDir, "config.toml")
	case DockerUnitName:
		return DockerConfigDir, path.Join(DockerConfigDir, "daemon.json")
	}
	return "", ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// execArg quotes one word of an Exec*= command line: specifiers (%) and
// variables ($) are escaped, and a word with spaces, quotes or control
// characters is double-quoted with C escapes.
func execArg(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	plain := s != ""
	for _, r := range s {
		if r <= ' ' || r == '"' || r == '\'' || r == '\\' || r == ';' || r == 0x7f {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < ' ' || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
