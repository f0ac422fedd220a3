package containerd

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os/exec"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/cri"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// Stage writes containerd's configuration files.
type Stage struct{}

// Name implements plan.Stage.
func (Stage) Name() string { return "containerd" }

// Plan implements plan.Stage.
func (Stage) Plan(ctx context.Context, env *plan.Env) ([]*plan.Action, error) {
	c := env.Spec.Containerd
	if c == nil {
		return nil, nil
	}
	target, err := ResolveTarget(ctx, env)
	if err != nil {
		return nil, err
	}
	if target.Credentials, err = ResolveCredentials(env.Root, c, env.Warnf); err != nil {
		return nil, err
	}
	if target.Dropins, err = ReadDropins(env.Root, target); err != nil {
		return nil, err
	}
	specFile := "the spec"
	if env.Doc != nil {
		specFile = env.Doc.File
	}
	if !env.Spec.DockerCRI() {
		// With Docker as the CRI the kubelet talks to cri-dockerd, and the
		// docker stage checks the agreement.
		want := cri.Agreement{Runtime: "containerd", Driver: plan.CgroupDriver(c.CgroupDriver, target.SystemdCgroup),
			DriverFrom: "containerd.cgroupDriver: " + c.CgroupDriver, Endpoint: "unix://" + c.Address, EndpointFrom: "containerd.address"}
		if err := cri.CheckKubelet(env.Root, want, specFile, env.Spec.Preflight, env.Warnf); err != nil {
			return nil, err
		}
	}
	config, conflicts, err := RenderConfig(c, target, env.Doc)
	if err != nil {
		return nil, err
	}
	for _, w := range conflicts {
		env.Warnf("containerd: %s", w)
	}
	for _, d := range target.Dropins {
		if _, ok := d.doc["version"]; !ok && !d.Merged && target.ConfigVersion >= 3 {
			env.Warnf("containerd: drop-in %s has no version line: containerd 2.x reads it as a version 1 file and migrates it at every start; add version = %d", d.Path, target.ConfigVersion)
		}
	}
	over, err := PatchOverrides(c, target)
	if err != nil {
		return nil, err
	}
	for _, o := range over {
		env.Warnf("containerd.patch overrides a value nodeprov renders from the spec (the patch wins): %s", o)
	}
	detail := fmt.Sprintf("config version %d, SystemdCgroup=%v, sandbox image %s at %s", target.ConfigVersion, target.SystemdCgroup, c.SandboxImage, SandboxImageKey(target))
	for _, d := range target.Dropins {
		how := "imported"
		if d.Merged {
			how = "merged"
		}
		detail += fmt.Sprintf(", drop-in %s %s", path.Base(d.Path), how)
	}
	var actions []*plan.Action
	a, err := planManaged(env.Root, "config "+ConfigPath, ConfigPath, config, 0o644)
	if err != nil {
		return nil, err
	}
	switch {
	case a.Op == plan.OpNone:
		a.Detail = detail
	case a.Op != plan.OpUnmanaged:
		a.Detail += "; " + detail
	}
	actions = append(actions, a)

	hosts, err := RenderHosts(c)
	if err != nil {
		return nil, err
	}
	wanted := map[string]bool{}
	for _, h := range hosts {
		wanted[h.Path] = true
		a, err := planManaged(env.Root, "registry "+h.Host, h.Path, h.Data, 0o644)
		if err != nil {
			return nil, err
		}
		actions = append(actions, a)
	}
	stale, err := staleHosts(env.Root, wanted)
	if err != nil {
		return nil, err
	}
	actions = append(actions, stale...)

	for _, name := range sortedRuntimes(c) {
		r := c.Runtimes[name]
		if r.Type != "io.containerd.runsc.v1" {
			continue
		}
		data, err := RenderRunsc(r.RunscConfig)
		if err != nil {
			return nil, err
		}
		p := or(r.ConfigPath, RunscConfig)
		a, err := planManaged(env.Root, "runsc config "+p, p, data, 0o644)
		if err != nil {
			return nil, err
		}
		actions = append(actions, a)
	}

	if c.Proxy != nil {
		data, secret := RenderProxy(c.Proxy)
		mode := fs.FileMode(0o644)
		if secret {
			mode = 0o640
		}
		a, err := plan.PlanFile(env.Root, "proxy drop-in "+ProxyDropin, plan.FileSpec{Path: ProxyDropin, Data: data, Mode: mode, Redact: true})
		if err != nil {
			return nil, err
		}
		actions = append(actions, a)
	} else if a, err := removeOwned(env.Root, "proxy drop-in "+ProxyDropin, ProxyDropin, []byte(plan.ManagedHeader)); err != nil {
		return nil, err
	} else if a != nil {
		actions = append(actions, a)
	}
	if env.Spec.DockerCRI() {
		return actions, nil // the CNI network and crictl.yaml are cri-dockerd's
	}
	companions, err := cri.Companions(env, c.CNI, "unix://"+c.Address)
	if err != nil {
		return nil, err
	}
	actions = append(actions, companions...)
	return append(actions, kataChecks(ctx, env)...), nil
}

// planManaged plans a TOML file that carries the managed marker. An
// existing file without the marker is the operator's: reported, never
// touched. A file that holds a secret (HoldsSecret) is written 0600
// instead of mode; every diff shows its secrets as <redacted>.
func planManaged(root *host.Root, resource, p string, data []byte, mode fs.FileMode) (*plan.Action, error) {
	cur, exists, err := root.ReadFile(p)
	if err != nil {
		return nil, err
	}
	if exists && !bytes.HasPrefix(cur, []byte(Marker+"\n")) {
		return &plan.Action{Resource: resource, Op: plan.OpUnmanaged,
			Detail: "no " + Marker + " first line: the operator's file, left alone"}, nil
	}
	if HoldsSecret(data) {
		mode = 0o600
	}
	return plan.PlanFile(root, resource, plan.FileSpec{Path: p, Data: data, Mode: mode, Redact: true})
}

// staleHosts removes hosts.toml files nodeprov wrote for registries that
// are no longer in the spec.
func staleHosts(root *host.Root, wanted map[string]bool) ([]*plan.Action, error) {
	names, err := root.ReadDir(CertsDir)
	if err != nil {
		return nil, err
	}
	var out []*plan.Action
	for _, name := range names {
		p := path.Join(CertsDir, name, "hosts.toml")
		if wanted[p] {
			continue
		}
		a, err := removeOwned(root, "registry "+name, p, []byte(Marker+"\n"))
		if err != nil {
			return nil, err
		}
		if a != nil {
			out = append(out, a)
		}
	}
	return out, nil
}

// removeOwned deletes a file that starts with nodeprov's marker; files
// without it are not nodeprov's and stay.
func removeOwned(root *host.Root, resource, p string, marker []byte) (*plan.Action, error) {
	cur, exists, err := root.ReadFile(p)
	if err != nil || !exists || !bytes.HasPrefix(cur, marker) {
		return nil, err
	}
	return plan.PlanRemove(root, resource, p)
}

func sortedRuntimes(c *spec.Containerd) []string {
	names := make([]string, 0, len(c.Runtimes))
	for n := range c.Runtimes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ResolveTarget decides the config version and cgroup driver.
//
// Config version: configVersion 2 or 3 as given; auto takes the major
// version of components.containerd, or of the installed binary's
// `containerd --version` when there is no component.
//
// Cgroup driver: systemd or cgroupfs as given; auto means systemd when
// systemd is PID 1 on the target (offline: when the image has systemd
// installed, since it will be PID 1 at boot), on any cgroup layout, and
// cgroupfs otherwise (plan.CgroupDriver).
func ResolveTarget(ctx context.Context, env *plan.Env) (Target, error) {
	c := env.Spec.Containerd
	var t Target
	major, minor := 0, 0
	if comp := env.Spec.Components.Containerd; comp != nil {
		major, minor = parseVersion(string(comp.Version))
	}
	if c.ConfigVersion == "auto" && major == 0 {
		v, err := installedVersion(ctx, env.Root)
		if err != nil {
			return t, fmt.Errorf("containerd.configVersion auto: %w; set configVersion to 2 (containerd 1.x) or 3 (2.x)", err)
		}
		major, minor = parseVersion(v)
	}
	switch c.ConfigVersion {
	case "2":
		t.ConfigVersion = 2
	case "3":
		t.ConfigVersion = 3
	case "4":
		t.ConfigVersion = 4
	default:
		switch {
		case major > 2 || major == 2 && minor >= 4:
			t.ConfigVersion = 4
		case major == 2:
			t.ConfigVersion = 3
		case major == 1:
			t.ConfigVersion = 2
		default:
			return t, fmt.Errorf("containerd.configVersion auto: cannot tell the containerd version")
		}
	}
	if t.ConfigVersion >= 3 {
		t.Minor = minor
		if major == 0 {
			t.Minor = 1 // no version known: assume a current 2.x
		}
	}
	switch c.CgroupDriver {
	case "systemd":
		t.SystemdCgroup = true
	case "cgroupfs":
		t.SystemdCgroup = false
	default:
		t.SystemdCgroup = plan.CgroupDriver("auto", env.SystemdPID1()) == "systemd"
	}
	return t, nil
}

var versionRE = regexp.MustCompile(`v?(\d+)\.(\d+)\.(\d+)`)

func parseVersion(v string) (major, minor int) {
	m := versionRE.FindStringSubmatch(v)
	if m == nil {
		return 0, 0
	}
	major, _ = strconv.Atoi(m[1])
	minor, _ = strconv.Atoi(m[2])
	return major, minor
}

// installedVersion runs the target's containerd --version.
func installedVersion(ctx context.Context, root *host.Root) (string, error) {
	for _, p := range []string{"/usr/local/bin/containerd", "/usr/bin/containerd"} {
		st, err := root.Lstat(p)
		if err != nil || !st.Exists {
			continue
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		out, err := exec.CommandContext(ctx, root.HostPath(p), "--version").Output()
		cancel()
		if err != nil {
			return "", fmt.Errorf("%s --version: %w", p, err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	return "", fmt.Errorf("no containerd component and no containerd binary in /usr/local/bin or /usr/bin")
}
