package containerd

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
)

// Operators' drop-ins, the k0s way.
//
// The managed config imports /etc/containerd/conf.d/*.toml. containerd 1.x
// replaces a whole plugin table with an imported file's (a drop-in that
// only adds a runtime wipes nodeprov's runc options, runtimes and sandbox
// image), while 2.x merges imported plugin tables key by key. So nodeprov
// reads the drop-ins when it plans: one that sets a CRI plugin table is
// deep-merged into the rendered config (its values win, as an import's
// would) and is not imported, so containerd cannot replace the table; the
// others stay plain imports. Both containerd generations then load the
// same effective config, the 2.x one. The rendered file names every
// drop-in with its digest, so adding, editing or removing one changes the
// managed config: `check` reports drift and a live apply restarts
// containerd.

// DropinDir is the directory of operators' drop-ins (DropinGlob).
const DropinDir = "/etc/containerd/conf.d"

// criPlugins are the plugin tables of CRI: 1.x's one, and 2.x's images
// and runtime (2.x keeps a small io.containerd.grpc.v1.cri as well).
var criPlugins = []string{"io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime"}

// Dropin is one operator drop-in as planned.
type Dropin struct {
	// Path inside the root.
	Path string
	// SHA256 of its bytes, hex.
	SHA256 string
	// Merged is set for a drop-in that sets a CRI plugin table: nodeprov
	// merges it into config.toml instead of importing it.
	Merged bool
	doc    table
}

// ReadDropins reads and classifies the drop-ins in the root, in the
// lexical order containerd imports them. A drop-in that is not valid TOML,
// or that sets what the rendered config cannot coexist with, is an error
// naming the file.
func ReadDropins(root *host.Root, t Target) ([]Dropin, error) {
	names, err := root.ReadDir(DropinDir)
	if err != nil {
		return nil, err
	}
	var out []Dropin
	for _, name := range names {
		if !strings.HasSuffix(name, ".toml") {
			continue
		}
		p := path.Join(DropinDir, name)
		data, exists, err := root.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("containerd drop-in %s: %w", p, err)
		}
		if !exists {
			continue // a dangling link: containerd's glob skips it too
		}
		d, err := parseDropin(p, data, t)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func parseDropin(p string, data []byte, t Target) (Dropin, error) {
	sum := sha256.Sum256(data)
	d := Dropin{Path: p, SHA256: hex.EncodeToString(sum[:]), doc: table{}}
	if err := toml.Unmarshal(data, &d.doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return d, fmt.Errorf("containerd drop-in %s:%d:%d: %s", p, row, col, de.Error())
		}
		return d, fmt.Errorf("containerd drop-in %s: %w", p, err)
	}
	plugins, _ := d.doc["plugins"].(table)
	for _, id := range criPlugins {
		if _, ok := plugins[id]; ok {
			d.Merged = true
		}
	}
	if !d.Merged {
		return d, nil
	}
	// The CRI tables moved between versions 2 and 3 and stayed put since.
	if v, ok := d.doc["version"].(int64); ok && (v == 2) != (t.ConfigVersion == 2) {
		return d, fmt.Errorf("containerd drop-in %s is config version %d and sets the CRI plugin, but the managed config is version %d: write its CRI tables for version %d (%s)",
			p, v, t.ConfigVersion, t.ConfigVersion, strings.Join(criTablesOf(t), ", "))
	}
	for _, id := range criPlugins {
		reg, _ := dig(plugins, id, "registry").(table)
		if _, ok := reg["mirrors"]; ok {
			return d, fmt.Errorf("containerd drop-in %s sets plugins.%q.registry.mirrors, which containerd refuses next to the config_path nodeprov renders: move the mirrors to %s/<host>/hosts.toml, or to containerd.registries in the spec", p, id, CertsDir)
		}
		configs, _ := reg["configs"].(table)
		for host, c := range configs {
			if ct, _ := c.(table); ct != nil && ct["tls"] != nil {
				return d, fmt.Errorf("containerd drop-in %s sets plugins.%q.registry.configs.%q.tls, which containerd refuses next to config_path: put the host's ca, client certificate or skip_verify in %s/%s/hosts.toml (or containerd.registries.%s.mirrors in the spec)", p, id, host, CertsDir, host, host)
			}
		}
	}
	return d, nil
}

func criTablesOf(t Target) []string {
	if t.ConfigVersion == 2 {
		return []string{`plugins."io.containerd.grpc.v1.cri"`}
	}
	return []string{`plugins."io.containerd.cri.v1.images"`, `plugins."io.containerd.cri.v1.runtime"`}
}

// dig follows keys through nested tables.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		t, ok := v.(table)
		if !ok {
			return nil
		}
		v = t[k]
	}
	return v
}

// mergeDropins merges the CRI drop-ins into the rendered doc in order and
// points imports at the others. A drop-in value that replaces one the
// spec sets explicitly is reported through conflict (file, key, both
// values; the drop-in wins, as an import would); one that replaces a
// default is the operator's choice and silent.
func mergeDropins(doc table, dropins []Dropin, explicit func(key []string) bool, conflict func(string)) table {
	var imported []any
	merged := false
	for _, d := range dropins {
		if !d.Merged {
			imported = append(imported, d.Path)
			continue
		}
		merged = true
		over := table{}
		for k, v := range d.doc {
			if k != "version" && k != "imports" {
				over[k] = v
			}
		}
		var replaced []string
		overrides(doc, over, "", &replaced)
		for _, r := range replaced {
			if explicit(splitTOMLKey(r)) {
				conflict(fmt.Sprintf("%s sets %s: the drop-in wins over the spec's value", d.Path, r))
			}
		}
		doc = MergePatch(doc, over).(table)
	}
	if merged {
		// containerd must not import the merged drop-ins again: name the
		// others one by one instead of the glob.
		if imported == nil {
			imported = []any{}
		}
		if _, kept := doc["imports"]; kept {
			doc["imports"] = imported
		}
	}
	return doc
}

// splitTOMLKey splits the key of an overrides line ("KEY: A -> B") into
// its parts, unquoting quoted ones.
func splitTOMLKey(line string) []string {
	key := line
	if i := strings.Index(line, ": "); i >= 0 {
		key = line[:i]
	}
	var parts []string
	for key != "" {
		if key[0] == '"' {
			end := 1
			for end < len(key) && (key[end] != '"' || key[end-1] == '\\') {
				end++
			}
			parts = append(parts, strings.ReplaceAll(key[1:end], `\"`, `"`))
			key = strings.TrimPrefix(key[min(end+1, len(key)):], ".")
			continue
		}
		i := strings.IndexByte(key, '.')
		if i < 0 {
			parts = append(parts, key)
			break
		}
		parts = append(parts, key[:i])
		key = key[i+1:]
	}
	return parts
}

// explicitIn returns whether a rendered TOML key comes from a value the
// spec file sets itself (doc nil: every value counts as explicit).
func explicitIn(doc *spec.Document) func(key []string) bool {
	return func(key []string) bool {
		if doc == nil {
			return true
		}
		const c = "containerd"
		has := func(p string) bool { return doc.Has(c + "." + p) }
		if len(key) >= 3 && key[0] == "plugins" && slices.Contains(criPlugins, key[1]) {
			rest := key[2:]
			switch {
			case rest[0] == "sandbox_image", len(rest) >= 2 && rest[0] == "pinned_images" && rest[1] == "sandbox":
				return has("sandboxImage")
			case rest[0] == "registry":
				return true // config_path and credentials: how nodeprov's registries work
			case rest[0] == "cni" && len(rest) >= 2 && strings.HasPrefix(rest[1], "bin_dir"):
				return has("cni.binDir")
			case rest[0] == "cni" && len(rest) >= 2 && rest[1] == "conf_dir":
				return has("cni.confDir")
			case rest[0] == "containerd" && len(rest) >= 2 && rest[1] == "default_runtime_name":
				return has("defaultRuntime")
			case rest[0] == "containerd" && len(rest) >= 3 && rest[1] == "runtimes":
				if rest[2] == "runc" {
					return len(rest) >= 5 && rest[4] == "SystemdCgroup" && has("cgroupDriver")
				}
				return doc.Has(spec.KeyPath(c+".runtimes", rest[2]))
			}
			return false
		}
		switch key[0] {
		case "root", "state":
			return has(key[0])
		case "grpc":
			return len(key) >= 2 && key[1] == "address" && has("address")
		case "plugins":
			return len(key) >= 4 && strings.HasPrefix(key[1], "io.containerd.server.v1.") && key[3] == "address" && has("address")
		}
		return false
	}
}

// dropinLines are the header comments that name every drop-in and its
// digest, so a drop-in change changes the managed config.
func dropinLines(dropins []Dropin) string {
	var b strings.Builder
	for _, d := range dropins {
		how := "imported"
		if d.Merged {
			how = "merged into this file (it sets a CRI plugin table, which containerd 1.x would replace whole)"
		}
		fmt.Fprintf(&b, "# drop-in %s sha256:%s: %s\n", d.Path, d.SHA256[:16], how)
	}
	return b.String()
}
