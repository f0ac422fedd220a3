package stages

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nodeprov/nodeprov/fetch"
	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/artifacts"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// SysextOptions configure Sysext (`nodeprov sysext`).
type SysextOptions struct {
	Spec *spec.Node
	// RootDir is where the spec's keyring, CA and registry config files
	// are read.
	RootDir string
	// Arch is the architecture of the image (amd64, arm64).
	Arch string
	// Name names the extension: NAME.raw and extension-release.NAME;
	// metadata.name, else "nodeprov", when empty.
	Name string
	// OSID and OSVersion are the extension-release ID and VERSION_ID;
	// an empty OSID is _any (every OS, no version check).
	OSID, OSVersion string
	// Out is the directory that receives NAME.raw.
	Out string
	// Cache is the download cache; a temporary one when empty.
	Cache string
	Downloads
	Observer Observer
}

// SysextResult says what Sysext built.
type SysextResult struct {
	Name   string `json:"name"`
	Arch   string `json:"arch"`
	Image  string `json:"image"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Relocations are the spec's install targets and where the image
	// holds them.
	Relocations []Relocation `json:"relocations"`
	// Units are the unit files shipped; Upheld those multi-user.target
	// starts after a merge.
	Units  []string `json:"units"`
	Upheld []string `json:"upheld"`
	// Release is the extension-release file's contents.
	Release string `json:"extensionRelease"`
	// Files lists the image, in lexical order.
	Files []host.ImageEntry `json:"files"`
	// Stages are the fetch and install stages' reports.
	Stages []StageReport `json:"stages"`
	// Host names the apply stages that write the spec's host
	// configuration next to the extension (kernel, files, containerd,
	// docker); empty when it has none.
	Host []string `json:"host"`
	// Notes say what of the spec the image leaves out, and why.
	Notes []string `json:"notes,omitempty"`
	// Timing is milliseconds spent on the artifacts and on mksquashfs.
	Timing map[string]float64 `json:"timingMs"`
}

// SysextName is the extension name Sysext uses for a spec when none is
// given: metadata.name, else "nodeprov".
func SysextName(n *spec.Node) string {
	if n.Metadata.Name != "" {
		return n.Metadata.Name
	}
	return "nodeprov"
}

// Sysext builds a systemd-sysext image of a spec: its artifacts, fetched
// and verified exactly as apply does (the fetch and install stages, run
// into a staging tree with every target relocated for an extension, see
// sysextPath), its units with the wiring that starts them after a merge,
// and the extension-release file, packed into a reproducible squashfs
// <Out>/<name>.raw. Host configuration (kernel, files, containerd's
// config) is not in the image: /etc is not overlaid, and those files are
// the host's to drift-check, so `nodeprov apply --stages
// kernel,files,containerd` writes them; Host says which apply that spec
// needs. The same spec and artifacts give a byte-identical image.
func Sysext(ctx context.Context, o SysextOptions) (*SysextResult, error) {
	res := &SysextResult{Name: o.Name, Arch: o.Arch, Timing: map[string]float64{}, Stages: []StageReport{}}
	if res.Name == "" {
		res.Name = SysextName(o.Spec)
	}
	if res.Arch == "" {
		res.Arch = spec.HostArch()
	}
	if err := checkSysextName(res.Name); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		// The install stage writes every file owned by root, as apply
		// does; failing here says so before anything is downloaded.
		return nil, fmt.Errorf("nodeprov sysext runs as root: it installs the artifacts as apply does, owned by root")
	}
	release, err := extensionRelease(o.OSID, o.OSVersion, res.Arch)
	if err != nil {
		return nil, err
	}
	res.Release = string(release)

	// Container image archives are imported into a running containerd by
	// apply's images stage; they are not files of /usr.
	n := *o.Spec
	if len(n.Images) > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("images: %d image archives are not in the extension: `nodeprov apply --stages fetch,images` imports them once containerd runs", len(n.Images)))
		n.Images = nil
	}
	arts, err := spec.Expand(&n, res.Arch)
	if err != nil {
		return nil, err
	}
	if res.Relocations, err = sysextRelocations(arts); err != nil {
		return nil, err
	}
	for _, r := range res.Relocations {
		if strings.HasPrefix(r.To, "/opt/") {
			res.Notes = append(res.Notes, "the image ships /opt ("+r.To+", "+r.Artifact+"): while merged, /opt is read-only, so nothing can write there "+
				"(containerd's opt plugin, CNI agents that copy their plugins into /opt/cni/bin); for the CNI plugins, components.cni.installDir "+
				"and containerd.cni.binDir /usr/lib/cni keep /opt the host's")
			break
		}
	}
	unitFiles, upheld, notes, err := sysextUnits(&n, res.Name, res.Relocations)
	if err != nil {
		return nil, err
	}
	res.Upheld, res.Notes = upheld, append(res.Notes, notes...)
	res.Host = sysextHostStages(&n)

	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	out, err := filepath.Abs(o.Out)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(out, ".nodeprov-sysext-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	tree := filepath.Join(work, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		return nil, err
	}

	start := time.Now()
	if res.Stages, err = sysextInstallArtifacts(ctx, o, &n, res.Arch, tree, work); err != nil {
		return res, err
	}
	res.Timing["artifacts"] = ms(time.Since(start))

	root, err := host.OpenRoot(tree)
	if err != nil {
		return res, err
	}
	defer root.Close()
	files := append(unitFiles, sysextFile{"/usr/lib/extension-release.d/extension-release." + res.Name, release})
	for _, f := range files {
		if err := root.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
			return res, err
		}
		if err := root.WriteFile(f.path, f.data, host.WriteOptions{Mode: 0o644, UID: -1, GID: -1}); err != nil {
			return res, err
		}
	}
	for _, f := range unitFiles {
		res.Units = append(res.Units, f.path)
	}
	if res.Files, err = host.NormalizeTree(tree); err != nil {
		return res, err
	}

	start = time.Now()
	res.Image = filepath.Join(out, res.Name+".raw")
	tmp := filepath.Join(work, res.Name+".raw")
	if err := host.Squashfs(ctx, tree, tmp); err != nil {
		return res, err
	}
	res.Timing["squashfs"] = ms(time.Since(start))
	if res.SHA256, err = fetch.FileSHA256(tmp); err != nil {
		return res, err
	}
	fi, err := os.Stat(tmp)
	if err != nil {
		return res, err
	}
	res.Size = fi.Size()
	if err := os.Chmod(tmp, 0o644); err != nil {
		return res, err
	}
	return res, os.Rename(tmp, res.Image)
}

// sysextInstallArtifacts runs the fetch and install stages into tree with
// every target relocated (sysextInstall), then removes what the install
// stage keeps for itself (its record under /var) so that only /usr and
// /opt remain.
func sysextInstallArtifacts(ctx context.Context, o SysextOptions, n *spec.Node, arch, tree, work string) ([]StageReport, error) {
	cache := o.Cache
	if cache == "" {
		cache = filepath.Join(work, "cache")
	}
	n, regCfg, err := sysextTrust(o, n)
	if err != nil {
		return nil, err
	}
	fetchStage, installStage := artifacts.New(artifacts.Options{CacheDir: cache, Parallel: o.Parallel,
		RequirePinned: o.RequirePinned, IdleTimeout: o.IdleTimeout, Progress: o.Progress, Pins: o.Pins,
		RegistryConfig: regCfg, Clean: true, Pipeline: true, Relocate: sysextInstall})
	root, err := host.OpenRoot(tree)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	env := &plan.Env{Spec: n, Root: root, Live: false, Kernel: host.NewKernel(), Changes: plan.NewChangeSet(),
		Parallel: o.Parallel, Arch: arch, Mode: string(ModeApply)}
	reports, _, err := run(ctx, env, []plan.Stage{fetchStage, installStage}, ModeApply, o.Observer)
	if err != nil {
		return reports, err
	}
	entries, err := os.ReadDir(tree)
	if err != nil {
		return reports, err
	}
	for _, e := range entries {
		if e.Name() != "usr" && e.Name() != "opt" {
			if err := os.RemoveAll(filepath.Join(tree, e.Name())); err != nil {
				return reports, err
			}
		}
	}
	return reports, nil
}

// sysextTrust returns a copy of n whose keyring and CA files, which the
// stages read inside their root (here the image tree), are inline, read
// from o.RootDir; and the registry config the downloads use.
func sysextTrust(o SysextOptions, n *spec.Node) (*spec.Node, []byte, error) {
	r, err := host.OpenRoot(o.RootDir)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	c := *n
	c.Keyrings = map[string]spec.Keyring{}
	for name, k := range n.Keyrings {
		if k.Path != "" {
			data, exists, err := r.ReadFile(k.Path)
			if err != nil {
				return nil, nil, fmt.Errorf("keyring %s: %w", name, err)
			}
			if !exists {
				return nil, nil, fmt.Errorf("keyring %s: %s does not exist in %s", name, k.Path, r.Dir())
			}
			k.Armored, k.Path = string(data), ""
		}
		c.Keyrings[name] = k
	}
	if n.TLS.CAFile != "" {
		data, exists, err := r.ReadFile(n.TLS.CAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("tls.caFile: %w", err)
		}
		if !exists {
			return nil, nil, fmt.Errorf("tls.caFile: %s does not exist in %s", n.TLS.CAFile, r.Dir())
		}
		c.TLS.CA, c.TLS.CAFile = string(data), ""
		if n.TLS.CA != "" {
			c.TLS.CA = n.TLS.CA + "\n" + string(data)
		}
	}
	regCfg, err := registryConfig(o.RootDir, n, o.RegistryConfig)
	return &c, regCfg, err
}

// sysextHostStages says which apply writes the spec's host configuration
// next to the extension, or nothing when it has none.
func sysextHostStages(n *spec.Node) []string {
	var st []string
	if len(n.Kernel.Modules)+len(n.Kernel.Sysctl) > 0 {
		st = append(st, "kernel")
	}
	if len(n.Files) > 0 {
		st = append(st, "files")
	}
	if n.Containerd != nil || n.Components.Containerd != nil {
		st = append(st, "containerd")
	}
	if n.Docker != nil || n.Components.Docker != nil {
		st = append(st, "docker")
	}
	return st
}
