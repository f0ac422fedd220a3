package spec

import (
	"fmt"
	"sort"
	"strings"
)

// DescribeArtifacts renders artifacts as YAML comment lines for `plan
// --expanded`: what each component and download expands to for arch (URL
// after mirrors, how it is verified, where it goes). Comments keep the
// expanded output a spec that loads as it is.
func DescribeArtifacts(arts []Artifact, arch string) string {
	if len(arts) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n# Components and downloads expand to these artifacts (%s):\n", arch)
	for _, a := range arts {
		fmt.Fprintf(&b, "#   %s (%s)\n", a.Name, a.SpecPath)
		fmt.Fprintf(&b, "#     url: %s\n", a.URL)
		if a.Upstream != a.URL {
			fmt.Fprintf(&b, "#     upstream: %s\n", a.Upstream)
		}
		for _, line := range verification(a) {
			fmt.Fprintf(&b, "#     %s\n", line)
		}
		for _, line := range installLines(a.Install) {
			fmt.Fprintf(&b, "#     %s\n", line)
		}
	}
	return b.String()
}

func verification(a Artifact) []string {
	var out []string
	switch {
	case a.SHA256 != "":
		out = append(out, "sha256: "+a.SHA256+" (pinned)")
	case a.SHA512 != "":
		out = append(out, "sha512: "+a.SHA512+" (pinned)")
	}
	if c := a.Checksum; c != nil {
		line := "checksum: " + c.URL
		if c.Name != "" {
			line += " (entry " + c.Name + ")"
		}
		if s := c.Signature; s != nil {
			if s.URL == "" {
				line += ", clearsigned, keyring " + s.Keyring
			} else {
				line += ", signed " + s.URL + " keyring " + s.Keyring
			}
		}
		out = append(out, line)
	}
	if s := a.Signature; s != nil {
		out = append(out, "signature: "+s.URL+" keyring "+s.Keyring)
	}
	if len(out) == 0 {
		out = append(out, "digest: from the lock file")
	}
	return out
}

func installLines(in Install) []string {
	switch {
	case in.Path != "":
		return []string{fmt.Sprintf("install: %s mode %04o", in.Path, in.Mode)}
	case len(in.Files) > 0:
		members := make([]string, 0, len(in.Files))
		for m := range in.Files {
			members = append(members, m)
		}
		sort.Strings(members)
		out := []string{"install members:"}
		for _, m := range members {
			out = append(out, fmt.Sprintf("  %s -> %s", m, in.Files[m]))
		}
		return out
	}
	line := "install tree: " + in.To
	if in.Strip > 0 {
		line += fmt.Sprintf(" (strip %d)", in.Strip)
	}
	if len(in.Include) > 0 {
		line += " only " + strings.Join(in.Include, ", ")
	}
	return []string{line}
}
