package spec

import (
	"maps"
	"net"
	"slices"
	"strings"
)

// DockerCRI reports whether Docker, through cri-dockerd, is the node's CRI:
// then /etc/crictl.yaml and the bridge conflist are cri-dockerd's, not
// containerd's.
func (n *Node) DockerCRI() bool { return n.Docker != nil && n.Docker.CRI != nil }

// CRIEndpoint is the CRI socket the node's kubelet and crictl talk to, as
// a unix:// URL: cri-dockerd's when Docker is the CRI, containerd's
// otherwise, and "" when the spec configures neither. Call it on a spec
// with defaults applied.
func (n *Node) CRIEndpoint() string {
	switch {
	case n.DockerCRI():
		return "unix://" + n.Docker.CRI.Endpoint
	case n.Containerd != nil:
		return "unix://" + n.Containerd.Address
	}
	return ""
}

// DockerRenderedKeys are the daemon.json keys nodeprov renders from the
// docker section; docker.settings overriding one of them is a warning.
var DockerRenderedKeys = []string{"data-root", "exec-opts", "insecure-registries", "log-driver", "log-opts", "registry-mirrors"}

func (v *validator) docker(n *Node) {
	const p = "docker"
	d := n.Docker
	v.targetPath(p+".dataRoot", d.DataRoot)
	for i, m := range d.RegistryMirrors {
		v.url(indexPath(p+".registryMirrors", i), m, false)
	}
	for i, r := range d.InsecureRegistries {
		if _, _, err := net.ParseCIDR(r); err != nil && !registryHost().MatchString(r) {
			v.errf(indexPath(p+".insecureRegistries", i), "invalid insecure registry %q: expected host, host:port or a CIDR such as 10.0.0.0/8", r)
		}
	}
	if d.LogDriver != "" && !dockerWord().MatchString(d.LogDriver) {
		v.errf(p+".logDriver", "invalid log driver %q: expected a driver name such as json-file, local or journald", d.LogDriver)
	}
	for _, k := range slices.Sorted(maps.Keys(d.LogOpts)) {
		if strings.ContainsAny(d.LogOpts[k], "\n\x00") {
			v.errf(keyPath(p+".logOpts", k), "log option %s must be a single line", k)
		}
	}
	if c := d.CRI; c != nil {
		v.absPath(p+".cri.endpoint", c.Endpoint)
		v.imageRef(p+".cri.sandboxImage", c.SandboxImage)
		v.podNetwork(p+".cri.cni", &c.CNI)
		if cd := n.Containerd; cd != nil && cd.CNI.Network == "bridge" && dockerNetwork(n) == "bridge" &&
			or(cd.CNI.ConfDir, "/etc/cni/net.d") == or(c.CNI.ConfDir, "/etc/cni/net.d") {
			v.errf("containerd.cni.network", "docker.cri makes Docker the node's CRI, and its bridge network is written to the same CNI directory: set containerd.cni.network to none (or give the two different confDirs)")
		}
	}
}

// dockerNetwork is docker.cri.cni.network as defaults will set it.
func dockerNetwork(n *Node) string {
	if w := n.Docker.CRI.CNI.Network; w != "" {
		return w
	}
	if n.Components.CNI != nil {
		return "bridge"
	}
	return "none"
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

var dockerWord = lazyRegexp(`^[a-z0-9][a-z0-9_.-]*$`)
