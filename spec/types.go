package spec

import (
	"slices"
	"strings"
)

// APIVersion is the only spec version this build understands.
const APIVersion = "nodeprov/v1alpha1"

// KindNode is the only document kind.
const KindNode = "Node"

// Struct tags used by the decoder and the schema generator:
//
//	yaml:"name"       key in the document
//	desc:"..."        one-line description (schema and docs)
//	enum:"a|b|c"      allowed values (checked by validation, published in the schema)
//	default:"..."     value applied by Defaults when the key is absent
//	required:"true"   the key must be present

// Node is a whole node spec: one YAML document.
type Node struct {
	APIVersion string             `yaml:"apiVersion" required:"true" enum:"nodeprov/v1alpha1" desc:"Spec version."`
	Kind       string             `yaml:"kind" required:"true" enum:"Node" desc:"Document kind."`
	Metadata   Metadata           `yaml:"metadata" desc:"Identifies the spec in reports."`
	Kernel     Kernel             `yaml:"kernel" desc:"Kernel modules to load and sysctl values to set, persisted and live."`
	Components Components         `yaml:"components" desc:"Known upstream releases, expanded into verified downloads and install targets."`
	Mirrors    []Mirror           `yaml:"mirrors" desc:"URL prefix rewrites applied to every component and download (air-gapped or internal mirrors)."`
	Downloads  []Download         `yaml:"downloads" desc:"Additional artifacts, each verified by a digest before it is installed."`
	Images     []Image            `yaml:"images" desc:"Container image archives, verified like downloads, kept in /var/lib/nodeprov/images and imported into containerd's k8s.io namespace (live; deferred to first boot offline), so pods start without a registry."`
	Keyrings   map[string]Keyring `yaml:"keyrings" desc:"Named OpenPGP keyrings that signatures are checked against."`
	TLS        TLS                `yaml:"tls" desc:"How downloads verify HTTPS servers: extra CA certificates for internal mirrors."`
	// RegistryConfig is read like tls.caFile: inside the target root.
	RegistryConfig string      `yaml:"registryConfig" desc:"docker-style config.json (its auths) with credentials for oci:// artifact sources, read inside the target root; --registry-config replaces it. Credential helpers are not run."`
	Containerd     *Containerd `yaml:"containerd" desc:"containerd configuration rendered to /etc/containerd/config.toml."`
	Docker         *Docker     `yaml:"docker" desc:"Docker Engine configuration rendered to /etc/docker/daemon.json, and cri-dockerd's when Docker is the node's CRI."`
	Files          []File      `yaml:"files" desc:"Plain files, directories and symbolic links."`
	Units          []Unit      `yaml:"units" desc:"systemd units and drop-ins."`
	MachineID      MachineID   `yaml:"machineID" desc:"Checks that /etc/machine-id is present and unique to this host."`
	Preflight      Preflight   `yaml:"preflight" desc:"Host probes run before anything changes."`
}

// Metadata names a spec.
type Metadata struct {
	Name string `yaml:"name" pattern:"dns-label" desc:"Name of this node profile, shown in reports."`
}

// Kernel holds kernel modules and sysctl settings.
type Kernel struct {
	Modules []string          `yaml:"modules" pattern:"module" desc:"Modules written to /etc/modules-load.d/nodeprov.conf and loaded now (builtin modules count as loaded)."`
	Sysctl  map[string]Scalar `yaml:"sysctl" keyPattern:"sysctl-key" desc:"Keys and values written to /etc/sysctl.d/99-nodeprov.conf and applied through /proc/sys."`
}

// Components are macros for well-known upstream releases. Expand turns each
// into plain downloads with install targets (see catalog.go for the layouts).
type Components struct {
	Containerd *ContainerdComponent `yaml:"containerd" desc:"containerd release tarball (bin/* installed to /usr/local/bin); versions 1.6, 1.7 and 2.x."`
	Runc       *RuncComponent       `yaml:"runc" desc:"runc static binary (installed to /usr/local/sbin/runc), checksum verified; OpenPGP signatures too when keyring is set."`
	CNI        *CNIComponent        `yaml:"cni" desc:"CNI reference plugins (installed to /opt/cni/bin); versions 1.0.0 and later."`
	GVisor     *GVisorComponent     `yaml:"gvisor" desc:"gVisor runsc and containerd-shim-runsc-v1 (installed to /usr/local/bin)."`
	Crictl     *CrictlComponent     `yaml:"crictl" desc:"crictl from cri-tools (installed to /usr/local/bin)."`
	Docker     *DockerComponent     `yaml:"docker" desc:"Docker Engine from its static release tarball (dockerd, docker, docker-init, docker-proxy installed to /usr/local/bin); Docker publishes no checksum file, so sha256 must pin it."`
	CriDockerd *CriDockerdComponent `yaml:"criDockerd" desc:"cri-dockerd, the CRI endpoint for Docker Engine (installed to /usr/local/bin); its releases carry no checksum file, so sha256 must pin it."`
	Kata       *KataComponent       `yaml:"kata" desc:"Kata Containers static release (kata-static-<version>-<arch>.tar.zst): containerd-shim-kata-v2, kata-runtime and the chosen hypervisor's configuration installed under /opt/kata, the two binaries linked into /usr/local/bin. Upstream publishes no checksum file: sha256 must be pinned."`
}

// Release holds what every component shares: which version, where from, an
// optional pinned digest of the main artifact per architecture, and a size
// cap.
type Release struct {
	Version Version           `yaml:"version" required:"true" desc:"Upstream release version, without a leading v."`
	BaseURL string            `yaml:"baseURL" desc:"URL of a directory laid out like the upstream release directory (which includes the version, e.g. https://github.com/containerd/containerd/releases/download/v2.1.4); the release's file names are appended to it (for gVisor <x86_64|aarch64>/runsc). Mirrors still apply."`
	SHA256  map[string]string `yaml:"sha256" pattern:"sha256" desc:"Pinned SHA-256 of the main artifact (containerd tarball, runc binary, CNI tarball, runsc, crictl tarball, Kata tarball) per architecture (amd64, arm64); the checksum file is used for the others. Required for kata, whose release has no checksum file."`
	MaxSize Size              `yaml:"maxSize" desc:"Largest accepted download of each of the component's artifacts, e.g. 512Mi; the catalog's cap when absent."`
}

// ContainerdComponent installs a containerd release.
type ContainerdComponent struct {
	Release    `yaml:",inline"`
	Static     bool     `yaml:"static" desc:"Use the statically linked containerd-static tarball (published for 1.7 and 2.x and by later 1.6 patch releases)."`
	Binaries   []string `yaml:"binaries" desc:"Binaries from bin/ to install; all of the release's when empty (2.x: containerd, containerd-shim-runc-v2, containerd-stress, ctr; 1.6/1.7 also containerd-shim, containerd-shim-runc-v1)."`
	InstallDir string   `yaml:"installDir" default:"/usr/local/bin" desc:"Directory that receives the binaries from bin/."`
}

// RuncComponent installs runc.
type RuncComponent struct {
	Release `yaml:",inline"`
	Path    string `yaml:"path" default:"/usr/local/sbin/runc" desc:"Install path of the runc binary."`
	Keyring string `yaml:"keyring" desc:"Name of an entry in keyrings (runc's runc.keyring). With it, the clearsigned runc.sha256sum and the detached runc.<arch>.asc are verified; without it, runc is verified only by the unsigned checksum from the same origin."`
}

// CNIComponent installs CNI reference plugins.
type CNIComponent struct {
	Release    `yaml:",inline"`
	Plugins    []string `yaml:"plugins" desc:"Plugins to install; all plugins of the release when empty."`
	InstallDir string   `yaml:"installDir" default:"/opt/cni/bin" desc:"Directory that receives the plugins."`
}

// GVisorComponent installs gVisor.
type GVisorComponent struct {
	Release    `yaml:",inline"`
	Shim       *bool  `yaml:"shim" default:"true" desc:"Also install containerd-shim-runsc-v1."`
	InstallDir string `yaml:"installDir" default:"/usr/local/bin" desc:"Directory that receives runsc and the shim."`
}

// CrictlComponent installs crictl.
type CrictlComponent struct {
	Release    `yaml:",inline"`
	InstallDir string `yaml:"installDir" default:"/usr/local/bin" desc:"Directory that receives crictl."`
}

// DockerComponent installs Docker Engine from the static release tarball
// (docker/ members: dockerd, docker, docker-init, docker-proxy, and the
// bundled containerd, containerd-shim-runc-v2, ctr and runc).
type DockerComponent struct {
	Release    `yaml:",inline"`
	Containerd string `yaml:"containerd" enum:"managed|bundled" default:"managed" desc:"Which containerd and runc dockerd runs on: managed uses the node's (components.containerd and components.runc, or whatever the host has) through containerd's socket, as Docker's own packages do with containerd.io; bundled installs the tarball's copies into bundledDir and lets dockerd start its private containerd from there."`
	InstallDir string `yaml:"installDir" default:"/usr/local/bin" desc:"Directory that receives dockerd, docker, docker-init and docker-proxy."`
	BundledDir string `yaml:"bundledDir" default:"/usr/local/lib/docker/bin" desc:"With containerd: bundled, the directory that receives the tarball's containerd, containerd-shim-runc-v2, ctr and runc; docker.service puts it first on dockerd's PATH."`
}

// CriDockerdComponent installs cri-dockerd.
type CriDockerdComponent struct {
	Release    `yaml:",inline"`
	InstallDir string `yaml:"installDir" default:"/usr/local/bin" desc:"Directory that receives cri-dockerd."`
}

// KataComponent installs Kata Containers from its static release tarball.
type KataComponent struct {
	Release    `yaml:",inline"`
	Hypervisor string   `yaml:"hypervisor" enum:"qemu|clh|firecracker" default:"qemu" desc:"Hypervisor whose configuration file (share/defaults/kata-containers/configuration-<hypervisor>.toml) is installed; containerd runtimes of type io.containerd.kata.v2 without configPath use it."`
	InstallDir string   `yaml:"installDir" default:"/opt/kata" desc:"Directory that receives the release's opt/kata/ members (bin/, share/). The release's configuration files name /opt/kata paths: change it only with configuration files of your own."`
	LinkDir    string   `yaml:"linkDir" default:"/usr/local/bin" desc:"Directory on containerd's PATH where containerd-shim-kata-v2 and kata-runtime are linked to the installed binaries."`
	Members    []string `yaml:"members" desc:"More regular files of the release to install, as paths under opt/kata/ (e.g. bin/qemu-system-x86_64, share/kata-containers/vmlinux-6.12.28-153): hypervisors, guest kernel and image. The release's symlinks (configuration.toml, vmlinux.container, kata-containers.img) are never installed; name the files they point at."`
}

// Mirror rewrites a URL prefix.
type Mirror struct {
	Prefix string `yaml:"prefix" required:"true" desc:"URL prefix to replace, e.g. https://github.com/."`
	To     string `yaml:"to" required:"true" desc:"Replacement prefix."`
}

// Download is one verified artifact.
type Download struct {
	URL       string            `yaml:"url" required:"true" pattern:"url" desc:"Source URL (https, http or file)."`
	SHA256    string            `yaml:"sha256" pattern:"sha256" desc:"Pinned SHA-256 digest (64 hex characters)."`
	SHA512    string            `yaml:"sha512" pattern:"sha512" desc:"Pinned SHA-512 digest (128 hex characters)."`
	Checksum  *Checksum         `yaml:"checksum" desc:"Checksum file to read the digest from."`
	Signature *Signature        `yaml:"signature" desc:"Detached OpenPGP signature of the artifact."`
	Path      string            `yaml:"path" desc:"Install the artifact itself at this absolute path."`
	Mode      Mode              `yaml:"mode" desc:"Mode of the installed file (octal string); 0644 when absent."`
	Extract   *Extract          `yaml:"extract" desc:"Install members of a tar.gz or tar.zst archive."`
	Links     map[string]string `yaml:"links" desc:"Symbolic links created once the artifact is installed: absolute link path to absolute target, e.g. /usr/local/bin/tool: /opt/tool/bin/tool. Existing links to another target and regular files are replaced; drift is reported."`
	MaxSize   Size              `yaml:"maxSize" desc:"Largest accepted download, e.g. 512Mi; exceeding it is an error."`
}

// Image is a container image archive (docker save / skopeo docker-archive,
// or an OCI archive whose index names its images), verified like a
// download and imported into containerd's k8s.io namespace.
type Image struct {
	URL       string     `yaml:"url" required:"true" pattern:"url" desc:"Source URL (https, http or file) of the archive; its file name names the copy in /var/lib/nodeprov/images."`
	SHA256    string     `yaml:"sha256" pattern:"sha256" desc:"Pinned SHA-256 digest of the archive (64 hex characters)."`
	SHA512    string     `yaml:"sha512" pattern:"sha512" desc:"Pinned SHA-512 digest of the archive (128 hex characters)."`
	Checksum  *Checksum  `yaml:"checksum" desc:"Checksum file to read the digest from."`
	Signature *Signature `yaml:"signature" desc:"Detached OpenPGP signature of the archive."`
	MaxSize   Size       `yaml:"maxSize" desc:"Largest accepted download, e.g. 2Gi; exceeding it is an error."`
}

// Checksum names a checksum file (sha256sum/sha512sum or BSD format, or a bare hash).
type Checksum struct {
	URL       string     `yaml:"url" required:"true" pattern:"url" desc:"URL of the checksum file."`
	Algorithm string     `yaml:"algorithm" enum:"sha256|sha512" desc:"Digest algorithm; taken from the file name or digest length when absent."`
	Signature *Signature `yaml:"signature" desc:"Signature of the checksum file (clearsigned when url is omitted)."`
}

// Signature names an OpenPGP signature and the keyring to check it with.
type Signature struct {
	URL     string `yaml:"url" desc:"Detached signature (.asc/.sig); for a checksum file, absent means the file itself is clearsigned."`
	Keyring string `yaml:"keyring" required:"true" desc:"Name of an entry in keyrings."`
}

// Extract selects archive members to install.
type Extract struct {
	Files   map[string]string `yaml:"files" desc:"Archive member name to absolute install path."`
	To      string            `yaml:"to" desc:"Install the archive tree under this directory."`
	Include []string          `yaml:"include" desc:"With to: only these members (after strip)."`
	Strip   int               `yaml:"strip" desc:"With to: leading path components to remove from member names."`
}

// Keyring is a set of armored OpenPGP public keys.
type Keyring struct {
	Path         string `yaml:"path" desc:"File holding armored public keys (several blocks allowed)."`
	Armored      string `yaml:"armored" desc:"Armored public keys, inline."`
	AllowExpired bool   `yaml:"allowExpired" desc:"Accept signatures by expired keys (reported as such)."`
}

// TLS holds CA certificates trusted for downloads (components, downloads,
// checksum files, signatures) in addition to the system's.
type TLS struct {
	CAFile string `yaml:"caFile" desc:"PEM file of CA certificates, read inside the target root, trusted for downloads in addition to the system's."`
	CA     string `yaml:"ca" desc:"PEM CA certificates, inline, trusted for downloads in addition to the system's."`
}

// Containerd describes the containerd configuration.
type Containerd struct {
	ConfigVersion  Scalar              `yaml:"configVersion" enum:"auto|2|3|4" default:"auto" desc:"Config layout: 2 for containerd 1.6/1.7, 3 for 2.0-2.3, 4 for 2.4 and later (server plugins instead of [grpc]); auto picks from the component or installed binary."`
	CgroupDriver   string              `yaml:"cgroupDriver" enum:"auto|systemd|cgroupfs" default:"auto" desc:"runc cgroup driver; auto uses systemd when it is PID 1 on the target (any cgroup layout), cgroupfs otherwise."`
	Root           string              `yaml:"root" default:"/var/lib/containerd" desc:"containerd persistent state directory."`
	State          string              `yaml:"state" default:"/run/containerd" desc:"containerd runtime state directory."`
	Address        string              `yaml:"address" default:"/run/containerd/containerd.sock" desc:"gRPC socket path."`
	SandboxImage   string              `yaml:"sandboxImage" default:"registry.k8s.io/pause:3.10" pattern:"image" desc:"Pod sandbox (pause) image."`
	DefaultRuntime string              `yaml:"defaultRuntime" default:"runc" desc:"Runtime handler used when a pod names none."`
	Runtimes       map[string]Runtime  `yaml:"runtimes" desc:"Extra runtime handlers (runc is always present)."`
	Registries     map[string]Registry `yaml:"registries" desc:"Registry host configuration rendered to certs.d/<host>/hosts.toml; _default applies to any host."`
	Proxy          *Proxy              `yaml:"proxy" desc:"Proxy environment for containerd.service."`
	Patch          Patch               `yaml:"patch" desc:"RFC 7396 merge patch over the rendered config.toml: TOML text, or a YAML mapping in which null deletes a key. A patch that overrides a value nodeprov renders from the spec is a warning."`
	CNI            PodNetwork          `yaml:"cni" desc:"Pod network configuration."`
}

// Runtime is a containerd runtime handler.
type Runtime struct {
	Type                         string            `yaml:"type" required:"true" desc:"runtime_type, e.g. io.containerd.runc.v2, io.containerd.runsc.v1, io.containerd.kata.v2."`
	Path                         string            `yaml:"path" desc:"Shim binary path, when not on PATH."`
	BinaryName                   string            `yaml:"binaryName" desc:"OCI runtime binary for the runc shim (e.g. runsc through io.containerd.runc.v2)."`
	ConfigPath                   string            `yaml:"configPath" desc:"Runtime configuration file (runsc.toml, Kata configuration.toml). A handler of type io.containerd.kata.v2 without it uses the configuration components.kata installs for its hypervisor, when that component is present."`
	PodAnnotations               []string          `yaml:"podAnnotations" desc:"Pod annotations passed to the runtime."`
	PrivilegedWithoutHostDevices bool              `yaml:"privilegedWithoutHostDevices" desc:"Do not expose host devices to privileged containers."`
	Options                      map[string]any    `yaml:"options" desc:"Free-form runtime options."`
	RunscConfig                  map[string]string `yaml:"runscConfig" desc:"gVisor only: runsc flags (without leading dashes) rendered into runsc.toml, e.g. network: none."`
	Overhead                     *RuntimeOverhead  `yaml:"overhead" desc:"Resources a pod's sandbox on this handler uses beyond its containers' requests: the overhead.podFixed of the handler's Kubernetes RuntimeClass (nodeprov runtimeclasses); containerd does not read it."`
	NodeSelector                 map[string]string `yaml:"nodeSelector" keyPattern:"label-key" pattern:"label-value" desc:"Node labels for the scheduling.nodeSelector of the handler's Kubernetes RuntimeClass (nodeprov runtimeclasses): pods of the class are scheduled only to nodes with these labels; containerd does not read it."`
}

// KataRuntimeType is the runtime_type of Kata Containers' shim v2.
const KataRuntimeType = "io.containerd.kata.v2"

// KataRuntimes returns the names of the containerd runtime handlers of
// type KataRuntimeType, sorted.
func (n *Node) KataRuntimes() []string {
	if n.Containerd == nil {
		return nil
	}
	var out []string
	for name, rt := range n.Containerd.Runtimes {
		if rt.Type == KataRuntimeType {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// RuntimeOverhead is the fixed per-pod overhead of a runtime handler, in
// Kubernetes resource quantities (a Kata VM's memory, a gVisor Sentry's).
type RuntimeOverhead struct {
	CPU    Quantity `yaml:"cpu" pattern:"quantity" desc:"CPU, e.g. 250m (a quarter of a core) or 1."`
	Memory Quantity `yaml:"memory" pattern:"quantity" desc:"Memory, e.g. 160Mi or 1Gi."`
}

// Registry is the hosts.toml of one registry host.
type Registry struct {
	Server  string           `yaml:"server" desc:"Upstream server URL; defaults to the registry's own."`
	Mirrors []RegistryMirror `yaml:"mirrors" desc:"Mirror hosts, tried in order."`
	Auth    *RegistryAuth    `yaml:"auth" desc:"Credentials containerd's CRI plugin pulls from the upstream server with (rendered into config.toml, which is then mode 0600)."`
}

// RegistryAuth is the credentials of one registry endpoint: a user name
// with a password, or an identity token. A secret can come from a file in
// the target root instead of the spec.
type RegistryAuth struct {
	Username          string `yaml:"username" desc:"User name; with password or passwordFile."`
	Password          string `yaml:"password" secret:"true" desc:"Password. Shown as <redacted> in every output."`
	PasswordFile      string `yaml:"passwordFile" desc:"File in the target root holding the password (one trailing newline is trimmed), so the spec need not hold it."`
	IdentityToken     string `yaml:"identityToken" secret:"true" desc:"OAuth2 identity (refresh) token, instead of username and password. Shown as <redacted> in every output."`
	IdentityTokenFile string `yaml:"identityTokenFile" desc:"File in the target root holding the identity token."`
}

// RegistryMirror is one mirror host.
type RegistryMirror struct {
	Host         string        `yaml:"host" required:"true" desc:"Mirror URL with scheme, e.g. https://mirror.example:5000."`
	Capabilities []string      `yaml:"capabilities" desc:"Subset of pull, resolve, push; pull and resolve when absent."`
	CA           string        `yaml:"ca" desc:"CA bundle path for this host."`
	SkipVerify   bool          `yaml:"skipVerify" desc:"Skip TLS verification (testing only)."`
	Auth         *RegistryAuth `yaml:"auth" desc:"Credentials for this mirror host (rendered into config.toml, which is then mode 0600)."`
}

// Proxy is the proxy environment of containerd.
type Proxy struct {
	HTTP    string   `yaml:"http" desc:"HTTP_PROXY value."`
	HTTPS   string   `yaml:"https" desc:"HTTPS_PROXY value."`
	NoProxy []string `yaml:"noProxy" desc:"NO_PROXY entries."`
}

// PodNetwork is the CNI configuration of a CRI: containerd's CRI plugin or
// cri-dockerd.
type PodNetwork struct {
	Network string `yaml:"network" enum:"bridge|none" default:"none" desc:"bridge writes a bridge conflist; none writes nothing."`
	Subnet  string `yaml:"subnet" default:"10.88.0.0/16" desc:"Pod subnet of the bridge network."`
	BinDir  string `yaml:"binDir" default:"/opt/cni/bin" desc:"CNI plugin directory."`
	ConfDir string `yaml:"confDir" default:"/etc/cni/net.d" desc:"CNI configuration directory."`
}

// Docker describes Docker Engine's daemon.json and, with cri, cri-dockerd.
type Docker struct {
	CgroupDriver       string            `yaml:"cgroupDriver" enum:"auto|systemd|cgroupfs" default:"auto" desc:"native.cgroupdriver of dockerd; auto uses systemd when it is PID 1 on the target, cgroupfs otherwise (as containerd.cgroupDriver does)."`
	DataRoot           string            `yaml:"dataRoot" default:"/var/lib/docker" desc:"dockerd's persistent state directory (data-root)."`
	RegistryMirrors    []string          `yaml:"registryMirrors" pattern:"url" desc:"Pull-through mirrors of Docker Hub (registry-mirrors), tried in order; Docker applies them to docker.io images only."`
	InsecureRegistries []string          `yaml:"insecureRegistries" desc:"Registries (host[:port] or CIDR) dockerd may reach over plain HTTP or unverified TLS (insecure-registries)."`
	LogDriver          string            `yaml:"logDriver" default:"json-file" desc:"Default logging driver of containers (log-driver)."`
	LogOpts            map[string]string `yaml:"logOpts" desc:"Options of the logging driver (log-opts), e.g. max-size: 10m."`
	Settings           map[string]any    `yaml:"settings" desc:"Further daemon.json keys, written as given over what nodeprov renders; overriding a key nodeprov renders from the spec is a warning."`
	CRI                *DockerCRI        `yaml:"cri" desc:"Docker is the node's CRI, through cri-dockerd: its unit flags, CNI configuration and /etc/crictl.yaml."`
}

// DockerCRI configures cri-dockerd, which serves the kubelet's CRI on top
// of dockerd.
type DockerCRI struct {
	Endpoint     string     `yaml:"endpoint" default:"/run/cri-dockerd.sock" desc:"Socket cri-docker.socket listens on: the kubelet's containerRuntimeEndpoint (unix://) and crictl's."`
	SandboxImage string     `yaml:"sandboxImage" default:"registry.k8s.io/pause:3.10" pattern:"image" desc:"Pod sandbox (pause) image (--pod-infra-container-image)."`
	CNI          PodNetwork `yaml:"cni" desc:"Pod network configuration (--cni-bin-dir, --cni-conf-dir, and the bridge conflist)."`
}

// File is a plain file, a directory or a symbolic link.
type File struct {
	Path     string `yaml:"path" required:"true" desc:"Absolute path inside the target root."`
	Type     string `yaml:"type" enum:"file|directory|symlink" default:"file" desc:"What to create."`
	Contents string `yaml:"contents" desc:"File contents."`
	Encoding string `yaml:"encoding" enum:"|base64|gzip+base64" desc:"Encoding of contents."`
	Target   string `yaml:"target" desc:"Link target (type symlink)."`
	Mode     Mode   `yaml:"mode" desc:"Octal mode string; 0644 for files, 0755 for directories."`
	Owner    string `yaml:"owner" default:"root:root" desc:"user:group, names resolved in the target root's /etc/passwd and /etc/group, or numeric ids."`
}

// Unit is a systemd unit.
type Unit struct {
	Name      string   `yaml:"name" required:"true" pattern:"unit" desc:"Unit name with its suffix, e.g. containerd.service."`
	Contents  string   `yaml:"contents" desc:"Unit file contents; built in for component units when absent."`
	Enabled   *bool    `yaml:"enabled" desc:"Enable (true) or disable (false); left as is when absent."`
	Masked    bool     `yaml:"masked" desc:"Mask the unit (link to /dev/null)."`
	State     string   `yaml:"state" enum:"started|stopped|unchanged" default:"unchanged" desc:"Desired run state on a live system."`
	Dropins   []Dropin `yaml:"dropins" desc:"Drop-in files in <name>.d/."`
	RestartOn []string `yaml:"restartOn" desc:"Paths whose change in this run restarts the unit."`
}

// Dropin is a unit drop-in file.
type Dropin struct {
	Name     string `yaml:"name" required:"true" desc:"File name ending in .conf."`
	Contents string `yaml:"contents" required:"true" desc:"Drop-in contents."`
}

// MachineID configures the machine-id checks.
type MachineID struct {
	Policy    string   `yaml:"policy" enum:"fail|regenerate|warn" default:"fail" desc:"What a missing, invalid or shared machine-id does."`
	Forbidden []string `yaml:"forbidden" pattern:"machine-id" desc:"Machine ids known to be shared (e.g. a base image's)."`
	Fleet     *Fleet   `yaml:"fleet" desc:"At a live apply, ask the Kubernetes API whether another Node already reports this host's machine id (machine-id.fleet-duplicate, handled by policy); deferred for an image root."`
}

// Fleet is the fleet-wide machine-id check: the Nodes of a Kubernetes
// cluster, read with a kubeconfig whose identity may list nodes.
type Fleet struct {
	Kubeconfig string `yaml:"kubeconfig" required:"true" desc:"Kubeconfig inside the target root whose identity may get and list nodes (a bootstrap token may not); its relative paths are relative to its directory."`
	NodeName   string `yaml:"nodeName" pattern:"dns-subdomain" desc:"This host's Node name, which is not a duplicate of itself; default: the host name, in lower case, as the kubelet takes it."`
}

// Preflight configures the host probes.
type Preflight struct {
	Ignore []string `yaml:"ignore" desc:"Probe names whose failure is downgraded to a warning."`
}

// Ignores returns the entry of Ignore that names probe, exactly or as a
// dotted prefix ("kernel.config" covers kernel.config.CONFIG_X; "all"
// covers every probe).
func (p Preflight) Ignores(probe string) (string, bool) {
	for _, e := range p.Ignore {
		if e == "all" || e == probe || strings.HasPrefix(probe, e+".") {
			return e, true
		}
	}
	return "", false
}

// CrossStageChecks are the checks outside the preflight stage that
// preflight.ignore can name: the kubelet's agreement with containerd,
// which the containerd stage checks.
func CrossStageChecks() []string {
	return []string{"kubelet.cgroup-driver", "kubelet.runtime-endpoint"}
}
