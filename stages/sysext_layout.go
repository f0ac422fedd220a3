package stages

import (
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/nodeprov/nodeprov/spec"
)

// Where a system extension's files go. systemd-sysext overlays only /usr
// and /opt (systemd ≥ 252 lists both as hierarchies), so everything an
// artifact installs must land in one of them. While merged, a directory
// of the extension hides whatever the host has at that path, a symlink
// included: an extension that ships usr/local/ hides a host whose
// /usr/local is a symlink into /var (Fedora CoreOS), and one that ships
// usr/sbin/ hides a host whose /usr/sbin is a symlink to bin (Fedora ≥ 42,
// Arch). So the extension uses only directories that are directories
// everywhere: /usr/local/X becomes /usr/X, and sbin becomes bin, which is
// on every service's PATH too (containerd finds its shims and runc there).

// sysextPath maps an absolute install target of a host to its place in a
// system extension: /usr/local/X to /usr/X, /usr/sbin/X (also from
// /usr/local/sbin) to /usr/bin/X, the rest of /usr and /opt unchanged,
// anything else an error.
func sysextPath(p string) (string, error) {
	c := path.Clean(p)
	if !path.IsAbs(c) {
		return "", fmt.Errorf("%s is not an absolute path", p)
	}
	if c == "/usr/local" || c == "/usr" || c == "/opt" {
		return "", fmt.Errorf("%s: an extension installs below /usr or /opt, not the directory itself", p)
	}
	if rest, ok := strings.CutPrefix(c, "/usr/local/"); ok {
		c = "/usr/" + rest
	}
	if c == "/usr/sbin" {
		c = "/usr/bin"
	}
	if rest, ok := strings.CutPrefix(c, "/usr/sbin/"); ok {
		c = "/usr/bin/" + rest
	}
	if strings.HasPrefix(c, "/usr/") || strings.HasPrefix(c, "/opt/") {
		return c, nil
	}
	return "", fmt.Errorf("%s is outside /usr and /opt, the only hierarchies systemd-sysext overlays (host configuration belongs to `nodeprov apply`)", p)
}

// sysextInstall relocates every target of an artifact's install (plain
// file, archive members, archive tree, links and their absolute targets
// that lie in /usr/local).
func sysextInstall(art spec.Artifact) (spec.Install, error) {
	in := art.Install
	out := in
	var err error
	if in.Path != "" {
		if out.Path, err = sysextPath(in.Path); err != nil {
			return in, err
		}
	}
	if in.To != "" {
		if out.To, err = sysextPath(in.To); err != nil {
			return in, err
		}
	}
	if in.Files != nil {
		out.Files = make(map[string]string, len(in.Files))
		for _, m := range slices.Sorted(maps.Keys(in.Files)) {
			if out.Files[m], err = sysextPath(in.Files[m]); err != nil {
				return in, fmt.Errorf("member %s: %w", m, err)
			}
		}
	}
	if in.Links != nil {
		out.Links = make(map[string]string, len(in.Links))
		for _, l := range slices.Sorted(maps.Keys(in.Links)) {
			nl, err := sysextPath(l)
			if err != nil {
				return in, fmt.Errorf("link: %w", err)
			}
			target := in.Links[l]
			if t := path.Clean(target); strings.HasPrefix(t, "/usr/local/") || strings.HasPrefix(t, "/usr/sbin/") {
				target, _ = sysextPath(t)
			}
			out.Links[nl] = target
		}
	}
	return out, nil
}

// Relocation is one install target of the spec and its place in the
// extension.
type Relocation struct {
	Artifact string `json:"artifact"`
	From     string `json:"from"`
	To       string `json:"to"`
}

// sysextRelocations lists every target of the artifacts with its place in
// the extension, in artifact order, and refuses a spec in which files of
// two artifacts land on one path (/usr/local/bin/runc and /usr/bin/runc
// both become /usr/bin/runc). Every error names the artifact.
func sysextRelocations(arts []spec.Artifact) ([]Relocation, error) {
	var out []Relocation
	owner := map[string]string{}
	for _, art := range arts {
		in, err := sysextInstall(art)
		if err != nil {
			return nil, fmt.Errorf("%s (%s): %w", art.SpecPath, art.Name, err)
		}
		add := func(from, to string) error {
			if prev, ok := owner[to]; ok && prev != art.Name {
				return fmt.Errorf("%s (%s): %s lands on %s, which %s installs too", art.SpecPath, art.Name, from, to, prev)
			}
			owner[to] = art.Name
			out = append(out, Relocation{Artifact: art.Name, From: from, To: to})
			return nil
		}
		var pairs [][2]string
		if art.Install.Path != "" {
			pairs = append(pairs, [2]string{art.Install.Path, in.Path})
		}
		if art.Install.To != "" {
			pairs = append(pairs, [2]string{art.Install.To, in.To})
		}
		for _, m := range slices.Sorted(maps.Keys(art.Install.Files)) {
			pairs = append(pairs, [2]string{art.Install.Files[m], in.Files[m]})
		}
		for _, l := range slices.Sorted(maps.Keys(art.Install.Links)) {
			to, _ := sysextPath(l)
			pairs = append(pairs, [2]string{l, to})
		}
		for _, p := range pairs {
			// A tree (To) may be shared by several artifacts (CNI
			// plugins and a download into /opt/cni/bin); files may not.
			if p[0] == art.Install.To {
				out = append(out, Relocation{Artifact: art.Name, From: p[0], To: p[1]})
				continue
			}
			if err := add(path.Clean(p[0]), p[1]); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// sysextNameRe is what an extension name may be: it names the image file
// and its extension-release file, which systemd requires to match.
var sysextNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// osReleaseValueRe is what os-release(5) allows in ID and VERSION_ID.
var osReleaseValueRe = regexp.MustCompile(`^[a-z0-9._-]+$`)

func checkSysextName(name string) error {
	if !sysextNameRe.MatchString(name) || strings.HasSuffix(name, ".raw") {
		return fmt.Errorf("extension name %q: use letters, digits, '.', '_' and '-' (at most 64, not ending in .raw): it names NAME.raw and its extension-release.NAME", name)
	}
	return nil
}

// sysextArchitecture is the extension-release ARCHITECTURE of a spec
// architecture, as systemd spells it (os-release(5)).
func sysextArchitecture(arch string) (string, error) {
	switch arch {
	case "amd64":
		return "x86-64", nil
	case "arm64":
		return "arm64", nil
	}
	return "", fmt.Errorf("unsupported architecture %q: expected one of %s", arch, strings.Join(spec.Arches(), ", "))
}

// extensionRelease is usr/lib/extension-release.d/extension-release.NAME.
// ID=_any matches every OS, and then systemd skips the version checks;
// SYSEXT_LEVEL=1.0 is what Flatcar's sysext-bakery writes for it. With a
// named OS, VERSION_ID must match the host's os-release. ARCHITECTURE
// keeps an amd64 image off an arm64 host. EXTENSION_RELOAD_MANAGER=1 makes
// systemd ≥ 255 reload the service manager on merge (older ones ignore
// the key and need `systemctl daemon-reload`).
func extensionRelease(osID, versionID, arch string) ([]byte, error) {
	a, err := sysextArchitecture(arch)
	if err != nil {
		return nil, err
	}
	if osID == "" {
		osID = "_any"
	}
	if osID != "_any" && !osReleaseValueRe.MatchString(osID) {
		return nil, fmt.Errorf("OS id %q: an os-release ID is lower-case letters, digits, '.', '_' and '-'", osID)
	}
	if versionID != "" && !osReleaseValueRe.MatchString(versionID) {
		return nil, fmt.Errorf("OS version %q: an os-release VERSION_ID is lower-case letters, digits, '.', '_' and '-'", versionID)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ID=%s\n", osID)
	switch {
	case osID == "_any" && versionID != "":
		return nil, fmt.Errorf("an OS version (%s) needs an OS id: with ID=_any systemd matches every OS and ignores versions", versionID)
	case osID == "_any":
		b.WriteString("SYSEXT_LEVEL=1.0\n")
	case versionID == "":
		return nil, fmt.Errorf("extension for OS %q: give its VERSION_ID too (systemd refuses an extension for a named OS without a matching SYSEXT_LEVEL or VERSION_ID)", osID)
	default:
		fmt.Fprintf(&b, "VERSION_ID=%s\n", versionID)
	}
	fmt.Fprintf(&b, "ARCHITECTURE=%s\nEXTENSION_RELOAD_MANAGER=1\n", a)
	return []byte(b.String()), nil
}
