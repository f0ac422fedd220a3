package spec

import (
	"fmt"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The component catalog: how each known upstream project publishes a
// release, after FACTS.md ("Upstream release layouts"). Each component's
// files live in one release directory; baseURL replaces exactly that
// directory, and the file names below are appended to it.
//
//	containerd  https://github.com/containerd/containerd/releases/download/v<v>
//	            containerd-<v>-linux-<goarch>.tar.gz (containerd-static-… with static: true)
//	            + <tarball>.sha256sum; members bin/<binary> -> installDir/<binary>
//	runc        https://github.com/opencontainers/runc/releases/download/v<v>
//	            runc.<goarch> -> path (0755); runc.sha256sum, clearsigned, entry runc.<goarch>;
//	            runc.<goarch>.asc (both checked only when keyring is set)
//	cni         https://github.com/containernetworking/plugins/releases/download/v<v>
//	            cni-plugins-linux-<goarch>-v<v>.tgz + .sha256; members ./<plugin> -> installDir/<plugin>
//	gvisor      https://storage.googleapis.com/gvisor/releases/release/<yyyymmdd[.n]>
//	            <x86_64|aarch64>/runsc and …/containerd-shim-runsc-v1 -> installDir (0755), each + .sha512
//	crictl      https://github.com/kubernetes-sigs/cri-tools/releases/download/v<v>
//	            crictl-v<v>-linux-<goarch>.tar.gz + .sha256 (a bare hash); member crictl -> installDir/crictl
//	docker      https://download.docker.com/linux/static/stable (one directory for every version)
//	            <x86_64|aarch64>/docker-<v>.tgz, no checksum file (pinned); members docker/<binary>:
//	            dockerd, docker, docker-init, docker-proxy -> installDir; with containerd: bundled
//	            also containerd, containerd-shim-runc-v2, ctr, runc -> bundledDir
//	criDockerd  https://github.com/Mirantis/cri-dockerd/releases/download/v<v>
//	            cri-dockerd-<v>.<goarch>.tgz, no checksum file (pinned); member
//	            cri-dockerd/cri-dockerd -> installDir/cri-dockerd
//	kata        https://github.com/kata-containers/kata-containers/releases/download/<v> (no v)
//	            kata-static-<v>-<goarch>.tar.zst, no checksum file (sha256 pinned in the spec);
//	            members ./opt/kata/<m> -> installDir/<m> for bin/containerd-shim-kata-v2,
//	            bin/kata-runtime, share/defaults/kata-containers/configuration-<hypervisor>.toml
//	            and members:; links linkDir/<binary> -> installDir/bin/<binary>
//
// Everything here is constants or built by functions: the catalog holds no
// mutable state.

// Upstream release directories: the URL of the directory that holds one
// release's files, %s being the version as written in the spec. A
// component's baseURL replaces exactly this part.
const (
	containerdReleaseDir = "https://github.com/containerd/containerd/releases/download/v%s"
	runcReleaseDir       = "https://github.com/opencontainers/runc/releases/download/v%s"
	cniReleaseDir        = "https://github.com/containernetworking/plugins/releases/download/v%s"
	gvisorReleaseDir     = "https://storage.googleapis.com/gvisor/releases/release/%s"
	crictlReleaseDir     = "https://github.com/kubernetes-sigs/cri-tools/releases/download/v%s"
	dockerReleaseDir     = "https://download.docker.com/linux/static/stable"
	criDockerdReleaseDir = "https://github.com/Mirantis/cri-dockerd/releases/download/v%s"
	kataReleaseDir       = "https://github.com/kata-containers/kata-containers/releases/download/%s"
)

// Default size caps of the catalog's artifacts, a few times their current
// size (containerd ~35 MB, runc ~12 MB, CNI ~50 MB, runsc ~60 MB, the runsc
// shim ~45 MB, crictl ~20 MB, Docker's static tarball ~75 MB, cri-dockerd
// ~20 MB, Kata's static tarball with its hypervisors, guest kernels and
// images a few hundred MB). A component's maxSize replaces them.
const (
	containerdMaxSize = 256 << 20
	runcMaxSize       = 64 << 20
	cniMaxSize        = 256 << 20
	runscMaxSize      = 256 << 20
	runscShimMaxSize  = 128 << 20
	crictlMaxSize     = 128 << 20
	dockerMaxSize     = 512 << 20
	criDockerdMaxSize = 256 << 20
	kataMaxSize       = 1 << 30
)

// Arches returns the architectures the catalog knows, in nodeprov's naming
// (Go's GOARCH): amd64 and arm64.
func Arches() []string { return []string{"amd64", "arm64"} }

func knownArch(arch string) bool {
	return arch == "amd64" || arch == "arm64"
}

// gvisorArch maps an architecture to gVisor's directory name (uname -m).
func gvisorArch(arch string) string {
	switch arch {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return arch
}

// semVersion is a parsed major.minor.patch version; a pre-release suffix
// (-rc.1) is kept only as text.
type semVersion struct {
	major, minor, patch int
	pre                 string
}

func parseSemver(s string) (semVersion, bool) {
	core, pre, _ := strings.Cut(s, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return semVersion{}, false
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || p == "" || (len(p) > 1 && p[0] == '0') {
			return semVersion{}, false
		}
		n[i] = v
	}
	return semVersion{n[0], n[1], n[2], pre}, true
}

// atLeast reports whether v >= major.minor.patch, ignoring any pre-release.
func (v semVersion) atLeast(major, minor, patch int) bool {
	if v.major != major {
		return v.major > major
	}
	if v.minor != minor {
		return v.minor > minor
	}
	return v.patch >= patch
}

// containerdBinaries lists the members under bin/ of a containerd release
// tarball (static or not): the Makefile's release target packs bin/ctr,
// containerd, containerd-stress and the shims; containerd 2.0 dropped the
// v1 shims (containerd-shim, containerd-shim-runc-v1). The catalog knows
// 1.6, 1.7 and 2.x, the versions whose config layouts nodeprov renders.
//
// Static tarballs (containerd-static-…) were added to the release process
// for 1.7.0 (containerd/containerd#7659) and are published for 2.x and by
// later 1.6 patch releases; which 1.6 patch first carried them is not
// pinned down here, so static: true is accepted for every catalog version
// and a missing tarball surfaces as a download error.
func containerdBinaries(version string) ([]string, error) {
	v, ok := parseSemver(version)
	switch {
	case !ok:
		return nil, fmt.Errorf("invalid containerd version %q", version)
	case v.major == 2:
		return []string{"containerd", "containerd-shim-runc-v2", "containerd-stress", "ctr"}, nil
	case v.major == 1 && (v.minor == 6 || v.minor == 7):
		return []string{"containerd", "containerd-shim", "containerd-shim-runc-v1", "containerd-shim-runc-v2", "containerd-stress", "ctr"}, nil
	}
	return nil, fmt.Errorf("containerd %s is not in the catalog, which knows 1.6, 1.7 and 2.x; install it with downloads:", version)
}

// cniDefaultPlugins lists the plugins a CNI plugins release is known to ship,
// installed when the spec lists none. tap and dummy are confirmed in 1.4.0
// and later tarballs; releases before 1.4.0 may ship them too, so listing
// them explicitly is allowed for any version.
func cniDefaultPlugins(version string) ([]string, error) {
	v, ok := parseSemver(version)
	switch {
	case !ok:
		return nil, fmt.Errorf("invalid CNI plugins version %q", version)
	case v.major < 1:
		return nil, fmt.Errorf("CNI plugins %s is not in the catalog, which knows 1.0.0 and later; install it with downloads:", version)
	}
	var out []string
	for _, p := range CNIPlugins {
		if (p == "tap" || p == "dummy") && !v.atLeast(1, 4, 0) {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// checkGVisorVersion checks a gVisor release name: yyyymmdd or yyyymmdd.N
// with a real date, published in the per-binary layout.
func checkGVisorVersion(version string) error {
	date, _, _ := strings.Cut(version, ".")
	if len(date) != 8 {
		return fmt.Errorf("invalid gVisor version %q: expected a release date such as 20250512", version)
	}
	if _, err := time.Parse("20060102", date); err != nil {
		return fmt.Errorf("invalid gVisor version %q: %s is not a date (yyyymmdd)", version, date)
	}
	return nil
}

// defaulted returns a copy of a component with its tag defaults applied, so
// that validation (which runs before defaults) and Expand of a spec built in
// code see the same install targets as a loaded spec.
func defaulted[T any](c *T) *T {
	cp := *c
	tagDefaults(reflect.ValueOf(&cp).Elem())
	return &cp
}

// releaseURL is the URL of a file of a release: under baseURL when set,
// otherwise under the upstream release directory.
func releaseURL(r *Release, dirPattern, file string) string {
	dir := r.BaseURL
	if dir == "" {
		dir = dirPattern
		if strings.Contains(dir, "%s") {
			dir = fmt.Sprintf(dirPattern, r.Version)
		}
	}
	return strings.TrimRight(dir, "/") + "/" + file
}

func sizeOr(s Size, def int64) int64 {
	if s > 0 {
		return int64(s)
	}
	return def
}

// pin returns the spec's pinned SHA-256 of a component's main artifact for
// arch, or "".
func (r *Release) pin(arch string) string { return r.SHA256[arch] }

// containerdArtifacts expands the containerd component: one tarball whose
// bin/ members are installed into installDir.
func containerdArtifacts(c *ContainerdComponent, arch string) ([]Artifact, error) {
	bins, err := containerdBinaries(string(c.Version))
	if err != nil {
		return nil, err
	}
	if len(c.Binaries) > 0 {
		bins = c.Binaries
	}
	kind := "containerd"
	if c.Static {
		kind = "containerd-static"
	}
	file := fmt.Sprintf("%s-%s-linux-%s.tar.gz", kind, c.Version, arch)
	url := releaseURL(&c.Release, containerdReleaseDir, file)
	return []Artifact{releaseTarball("containerd", url, ".sha256sum", file, c.pin(arch),
		sizeOr(c.MaxSize, containerdMaxSize), "bin/", bins, c.InstallDir)}, nil
}

// releaseTarball is the artifact of a release tarball checked against the
// sha256 file next to it (url+suffix, naming file), whose members
// prefix+name are installed as dir/name.
func releaseTarball(name, url, suffix, file, pin string, maxSize int64, prefix string, names []string, dir string) Artifact {
	files := make(map[string]string, len(names))
	for _, n := range names {
		files[prefix+n] = path.Join(dir, n)
	}
	return Artifact{
		Name:     name,
		SpecPath: "components." + name,
		URL:      url,
		SHA256:   pin,
		Checksum: &ChecksumRef{URL: url + suffix, Algorithm: "sha256", Name: file},
		MaxSize:  maxSize,
		Install:  Install{Files: files},
	}
}

// runcArtifacts expands the runc component: the static binary, checked
// against the runc.sha256sum entry for it and, with a keyring, against the
// clearsignature of that file and the detached .asc.
func runcArtifacts(c *RuncComponent, arch string) ([]Artifact, error) {
	file := "runc." + arch
	url := releaseURL(&c.Release, runcReleaseDir, file)
	a := Artifact{
		Name:     "runc",
		SpecPath: "components.runc",
		URL:      url,
		SHA256:   c.pin(arch),
		Checksum: &ChecksumRef{URL: releaseURL(&c.Release, runcReleaseDir, "runc.sha256sum"), Algorithm: "sha256", Name: file},
		MaxSize:  sizeOr(c.MaxSize, runcMaxSize),
		Install:  Install{Path: c.Path, Mode: 0o755},
	}
	if c.Keyring != "" {
		a.Checksum.Signature = &SignatureRef{Keyring: c.Keyring} // clearsigned
		a.Signature = &SignatureRef{URL: url + ".asc", Keyring: c.Keyring}
	}
	return []Artifact{a}, nil
}

// cniArtifacts expands the CNI component: one tarball whose ./<plugin>
// members are installed into installDir.
func cniArtifacts(c *CNIComponent, arch string) ([]Artifact, error) {
	plugins := c.Plugins
	if len(plugins) == 0 {
		var err error
		if plugins, err = cniDefaultPlugins(string(c.Version)); err != nil {
			return nil, err
		}
	}
	file := fmt.Sprintf("cni-plugins-linux-%s-v%s.tgz", arch, c.Version)
	url := releaseURL(&c.Release, cniReleaseDir, file)
	return []Artifact{releaseTarball("cni", url, ".sha256", file, c.pin(arch),
		sizeOr(c.MaxSize, cniMaxSize), "./", plugins, c.InstallDir)}, nil
}

// gvisorArtifacts expands the gVisor component: runsc and, unless shim is
// false, containerd-shim-runsc-v1, each with its own .sha512 file. The pin
// in sha256 applies to runsc.
func gvisorArtifacts(c *GVisorComponent, arch string) ([]Artifact, error) {
	if err := checkGVisorVersion(string(c.Version)); err != nil {
		return nil, err
	}
	type binary struct {
		name    string
		maxSize int64
	}
	bins := []binary{{"runsc", runscMaxSize}}
	if c.Shim == nil || *c.Shim {
		bins = append(bins, binary{"containerd-shim-runsc-v1", runscShimMaxSize})
	}
	var out []Artifact
	for i, b := range bins {
		url := releaseURL(&c.Release, gvisorReleaseDir, gvisorArch(arch)+"/"+b.name)
		a := Artifact{
			Name:     "gvisor/" + b.name,
			SpecPath: "components.gvisor",
			URL:      url,
			Checksum: &ChecksumRef{URL: url + ".sha512", Algorithm: "sha512", Name: b.name},
			MaxSize:  sizeOr(c.MaxSize, b.maxSize),
			Install:  Install{Path: path.Join(c.InstallDir, b.name), Mode: 0o755},
		}
		if i == 0 {
			a.SHA256 = c.pin(arch)
		}
		out = append(out, a)
	}
	return out, nil
}

// crictlArtifacts expands the crictl component: one tarball with a single
// member, crictl, and a .sha256 file holding only the hash.
func crictlArtifacts(c *CrictlComponent, arch string) ([]Artifact, error) {
	file := fmt.Sprintf("crictl-v%s-linux-%s.tar.gz", c.Version, arch)
	url := releaseURL(&c.Release, crictlReleaseDir, file)
	return []Artifact{releaseTarball("crictl", url, ".sha256", file, c.pin(arch),
		sizeOr(c.MaxSize, crictlMaxSize), "", []string{"crictl"}, c.InstallDir)}, nil
}

// DockerBinaries are the members of Docker's static tarball (under docker/)
// that are Docker's own, installed into installDir.
var DockerBinaries = []string{"dockerd", "docker", "docker-init", "docker-proxy"}

// DockerBundled are the members of Docker's static tarball that belong to
// containerd and runc, installed into bundledDir with containerd: bundled.
var DockerBundled = []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc"}

// dockerArtifacts expands the docker component: the static tarball, which
// only a pin verifies (the spec's, validated to be there, or for another
// architecture an operator's line in the lock file; without one the fetch
// fails for want of a digest).
func dockerArtifacts(c *DockerComponent, arch string) ([]Artifact, error) {
	file := fmt.Sprintf("docker-%s.tgz", c.Version)
	files := map[string]string{}
	for _, b := range DockerBinaries {
		files["docker/"+b] = path.Join(c.InstallDir, b)
	}
	if c.Containerd == "bundled" {
		for _, b := range DockerBundled {
			files["docker/"+b] = path.Join(c.BundledDir, b)
		}
	}
	return []Artifact{{
		Name:     "docker",
		SpecPath: "components.docker",
		URL:      releaseURL(&c.Release, dockerReleaseDir, gvisorArch(arch)+"/"+file),
		SHA256:   c.pin(arch),
		MaxSize:  sizeOr(c.MaxSize, dockerMaxSize),
		Install:  Install{Files: files},
	}}, nil
}

// criDockerdArtifacts expands the criDockerd component: the release
// tarball, which only a pin verifies, as for docker.
func criDockerdArtifacts(c *CriDockerdComponent, arch string) ([]Artifact, error) {
	file := fmt.Sprintf("cri-dockerd-%s.%s.tgz", c.Version, arch)
	return []Artifact{{
		Name:     "criDockerd",
		SpecPath: "components.criDockerd",
		URL:      releaseURL(&c.Release, criDockerdReleaseDir, file),
		SHA256:   c.pin(arch),
		MaxSize:  sizeOr(c.MaxSize, criDockerdMaxSize),
		Install:  Install{Files: map[string]string{"cri-dockerd/cri-dockerd": path.Join(c.InstallDir, "cri-dockerd")}},
	}}, nil
}

// kataMemberPrefix is the directory of every member of Kata's static
// release that nodeprov installs.
const kataMemberPrefix = "opt/kata/"

// kataBinaries are the release's binaries linked into linkDir: the shim
// containerd starts for io.containerd.kata.v2, and kata-runtime (check,
// env).
var kataBinaries = []string{"containerd-shim-kata-v2", "kata-runtime"}

// KataConfigPath is where the kata component installs the configuration
// file of its hypervisor; kata runtime handlers without configPath use it.
func KataConfigPath(c *KataComponent) string {
	c = defaulted(c)
	return path.Join(c.InstallDir, kataConfigMember(c.Hypervisor))
}

// KataRuntimePath is where the kata component installs kata-runtime.
func KataRuntimePath(c *KataComponent) string {
	return path.Join(defaulted(c).InstallDir, "bin", "kata-runtime")
}

// kataConfigMember is the configuration file of a hypervisor, relative to
// opt/kata/ (configuration.toml is a symlink to the qemu one in the
// release: never selected).
func kataConfigMember(hypervisor string) string {
	return "share/defaults/kata-containers/configuration-" + hypervisor + ".toml"
}

// kataMembers lists the members (relative to opt/kata/) the component
// installs.
func kataMembers(c *KataComponent) []string {
	out := []string{"bin/" + kataBinaries[0], "bin/" + kataBinaries[1], kataConfigMember(c.Hypervisor)}
	for _, m := range c.Members {
		if m = path.Clean(strings.TrimPrefix(m, "./")); !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// kataArtifacts expands the kata component: the static tarball, verified
// only by a pin (upstream publishes no checksum file), whose
// opt/kata/ members are installed into installDir, with the shim and
// kata-runtime linked into linkDir.
func kataArtifacts(c *KataComponent, arch string) ([]Artifact, error) {
	file := fmt.Sprintf("kata-static-%s-%s.tar.zst", c.Version, arch)
	files := map[string]string{}
	for _, m := range kataMembers(c) {
		files[kataMemberPrefix+m] = path.Join(c.InstallDir, m)
	}
	links := map[string]string{}
	for _, b := range kataBinaries {
		links[path.Join(c.LinkDir, b)] = path.Join(c.InstallDir, "bin", b)
	}
	return []Artifact{{
		Name:     "kata",
		SpecPath: "components.kata",
		URL:      releaseURL(&c.Release, kataReleaseDir, file),
		// Validation requires a pin; an architecture the spec has none
		// for can still be pinned by the lock file, and otherwise fails
		// in the fetch stage for want of a digest.
		SHA256:  c.pin(arch),
		MaxSize: sizeOr(c.MaxSize, kataMaxSize),
		Install: Install{Files: files, Links: links},
	}}, nil
}

// componentArtifacts expands every component present, in the fixed order
// containerd, runc, cni, gvisor, crictl, docker, criDockerd, kata, before
// mirrors. Components get
// their tag defaults first, so a Node built in code expands like a loaded
// one.
func componentArtifacts(c *Components, arch string) ([]Artifact, error) {
	type step struct {
		path   string
		expand func() ([]Artifact, error)
	}
	var steps []step
	if c.Containerd != nil {
		steps = append(steps, step{"components.containerd", func() ([]Artifact, error) { return containerdArtifacts(defaulted(c.Containerd), arch) }})
	}
	if c.Runc != nil {
		steps = append(steps, step{"components.runc", func() ([]Artifact, error) { return runcArtifacts(defaulted(c.Runc), arch) }})
	}
	if c.CNI != nil {
		steps = append(steps, step{"components.cni", func() ([]Artifact, error) { return cniArtifacts(defaulted(c.CNI), arch) }})
	}
	if c.GVisor != nil {
		steps = append(steps, step{"components.gvisor", func() ([]Artifact, error) { return gvisorArtifacts(defaulted(c.GVisor), arch) }})
	}
	if c.Crictl != nil {
		steps = append(steps, step{"components.crictl", func() ([]Artifact, error) { return crictlArtifacts(defaulted(c.Crictl), arch) }})
	}
	if c.Docker != nil {
		steps = append(steps, step{"components.docker", func() ([]Artifact, error) { return dockerArtifacts(defaulted(c.Docker), arch) }})
	}
	if c.CriDockerd != nil {
		steps = append(steps, step{"components.criDockerd", func() ([]Artifact, error) { return criDockerdArtifacts(defaulted(c.CriDockerd), arch) }})
	}
	if c.Kata != nil {
		steps = append(steps, step{"components.kata", func() ([]Artifact, error) { return kataArtifacts(defaulted(c.Kata), arch) }})
	}
	var out []Artifact
	for _, s := range steps {
		as, err := s.expand()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.path, err)
		}
		out = append(out, as...)
	}
	return out, nil
}
