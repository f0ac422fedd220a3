package stages

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/units"
)

// sysextUnitDir is where an extension ships units: the vendor directory,
// which the overlay fills and systemd reads after a daemon-reload.
const sysextUnitDir = "/usr/lib/systemd/system"

// sysextFile is a file the extension ships besides the artifacts.
type sysextFile struct {
	path string
	data []byte
}

// sysextUnits returns the spec's units and drop-ins as files of the
// extension and the units to start once it is merged. A merge enables
// nothing (enablement links live in /etc), so enabled or started units are
// upheld by multi-user.target through a drop-in, as Flatcar's
// sysext-bakery does (sysext-bakery#8): once the manager has reloaded,
// systemd starts them and keeps them running. Masks are host state and
// stay with `nodeprov apply`, which notes says.
func sysextUnits(n *spec.Node, name string, relocs []Relocation) (files []sysextFile, upheld, notes []string, err error) {
	for i, u := range n.Units {
		at := fmt.Sprintf("units[%d] (%s)", i, u.Name)
		if u.Masked {
			notes = append(notes, at+": masked units are host state: `nodeprov apply --stages units` masks it")
			continue
		}
		contents := []byte(u.Contents)
		if u.Contents == "" {
			if contents, err = sysextBuiltinUnit(n, u.Name); err != nil {
				return nil, nil, nil, fmt.Errorf("%s: %w", at, err)
			}
		} else if err := checkUnitPaths(u.Contents, relocs); err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", at, err)
		}
		files = append(files, sysextFile{path.Join(sysextUnitDir, u.Name), contents})
		for _, d := range u.Dropins {
			if err := checkUnitPaths(d.Contents, relocs); err != nil {
				return nil, nil, nil, fmt.Errorf("%s: drop-in %s: %w", at, d.Name, err)
			}
			files = append(files, sysextFile{path.Join(sysextUnitDir, u.Name+".d", d.Name), []byte(d.Contents)})
		}
		if (u.Enabled != nil && *u.Enabled) || u.State == "started" {
			upheld = append(upheld, u.Name)
		}
	}
	if len(upheld) > 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "# nodeprov sysext %s: start the extension's services once it is merged\n", name)
		b.WriteString("# (a merge enables nothing; multi-user.target upholds them).\n[Unit]\n")
		for _, u := range upheld {
			fmt.Fprintf(&b, "Upholds=%s\n", u)
		}
		files = append(files, sysextFile{path.Join(sysextUnitDir, "multi-user.target.d", "10-"+name+".conf"), []byte(b.String())})
	}
	return files, upheld, notes, nil
}

// sysextBuiltinUnit is the built-in unit for name with ExecStart at the
// extension's binary. Only containerd.service has one here: the other
// built-ins start tools from their host install paths.
func sysextBuiltinUnit(n *spec.Node, name string) ([]byte, error) {
	c := n.Components.Containerd
	if name != units.ContainerdUnitName || c == nil {
		return nil, fmt.Errorf("no contents, and a system extension has a built-in unit only for %s with components.containerd: give the unit's contents", units.ContainerdUnitName)
	}
	if len(c.Binaries) > 0 && !slices.Contains(c.Binaries, "containerd") {
		return nil, fmt.Errorf("the built-in %s runs containerd, but components.containerd.binaries does not install it", name)
	}
	relocated := *c
	dir := c.InstallDir
	if dir == "" {
		dir = "/usr/local/bin" // the spec's default installDir
	}
	var err error
	if relocated.InstallDir, err = sysextPath(dir); err != nil {
		return nil, fmt.Errorf("components.containerd.installDir: %w", err)
	}
	return units.ContainerdUnit(&relocated), nil
}

// checkUnitPaths refuses unit text that names a path the extension moved
// (ExecStart=/usr/local/bin/tool when the tool is at /usr/bin/tool): the
// unit would fail on the merged host.
func checkUnitPaths(text string, relocs []Relocation) error {
	for _, r := range relocs {
		if r.From == r.To {
			continue
		}
		if i := strings.Index(text, r.From); i >= 0 {
			rest := text[i+len(r.From):]
			if rest == "" || strings.ContainsAny(rest[:1], " \t\n\"'/;") {
				return fmt.Errorf("names %s, which the extension holds at %s (artifact %s): use that path", r.From, r.To, r.Artifact)
			}
		}
	}
	return nil
}
