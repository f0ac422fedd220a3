package schema

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

func TestMarkdown(t *testing.T) {
	md, err := Markdown()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# nodeprov spec reference\n",
		"\n## Node\n\nThe document root.\n\n| field | type | default | description |\n|---|---|---|---|\n" +
			"| `apiVersion` (required) | string: nodeprov/v1alpha1 |  | Spec version. |\n" +
			"| `kind` (required) | string: Node |  | Document kind. |\n" +
			"| `metadata` | [Metadata](#metadata) |  | Identifies the spec in reports. |\n",
		"| `cgroupDriver` | string: auto, systemd, cgroupfs | `auto` | runc cgroup driver;",
		"| `shim` | boolean | `true` | Also install containerd-shim-runsc-v1. |\n",
		"| `encoding` | string: `\"\"`, base64, gzip+base64 |  | Encoding of contents. |\n",
		"| `mode` | string matching `^0?[0-7]{3,4}$` |  |",
		"| `maxSize` | string or integer matching `^([0-9]+)(Ki\\|Mi\\|Gi)?$` |  |",
		"| `sysctl` | map of string or integer |  |",
		"| `keyrings` | map of [Keyring](#keyring) |  |",
		"| `downloads` | list of [Download](#download) |  |",
		"| `options` | map of any |  | Free-form runtime options. |\n",
		"| `registries` | map of [Registry](#registry) |  | Registry host configuration rendered to certs.d/\\<host>/hosts.toml; \\_default applies to any host. |\n",
		"\n## Signature\n\nUsed in: [Checksum](#checksum) `signature`, [Download](#download) `signature`, [Image](#image) `signature`.\n",
		"| `version` (required) | string or integer |  | Upstream release version, without a leading v. |\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q", want)
		}
	}

	// Rows follow declaration order, not alphabetical order.
	c := section(t, md, "Containerd")
	prev := -1
	for _, k := range []string{"configVersion", "cgroupDriver", "root", "state", "address", "sandboxImage", "defaultRuntime", "runtimes", "registries", "proxy", "patch", "cni"} {
		i := strings.Index(c, "| `"+k+"`")
		if i < 0 || i < prev {
			t.Errorf("Containerd row %s missing or out of order", k)
		}
		prev = i
	}
	// One section per object; root first.
	var doc struct {
		Defs map[string]any `json:"$defs"`
	}
	if err := json.Unmarshal(JSON(), &doc); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(md, "\n## "); n != 1+len(doc.Defs) {
		t.Errorf("%d sections, want %d (root + %d $defs)", n, 1+len(doc.Defs), len(doc.Defs))
	}
	if strings.Index(md, "\n## Node\n") > strings.Index(md, "\n## Metadata\n") {
		t.Error("root section is not first")
	}
	// Every table row has four cells (no unescaped pipes).
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Count(strings.ReplaceAll(line, `\|`, ""), "|") - 1
		if cells != 4 {
			t.Errorf("row with %d cells: %s", cells, line)
		}
	}
}

func section(t *testing.T, md, name string) string {
	t.Helper()
	_, rest, ok := strings.Cut(md, "\n## "+name+"\n")
	if !ok {
		t.Fatalf("no section %s", name)
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

func TestReferenceUpToDate(t *testing.T) {
	got, err := Markdown()
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile("REFERENCE.md")
	if err != nil {
		t.Fatalf("%v (run `go generate ./schema`)", err)
	}
	if got != string(committed) {
		t.Fatal("schema/REFERENCE.md is out of date with package spec; run `go generate ./schema` and commit the result")
	}
}
