// Package containerd renders containerd's configuration from the spec:
// config.toml (version 2 for containerd 1.6/1.7, version 3 for 2.x),
// registry hosts.toml files, runsc.toml, the proxy drop-in, and the CNI and
// crictl files the files stage writes.
package containerd

import (
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/nodeprov/nodeprov/spec"
)

// Marker is the first line of every config nodeprov manages. A config
// without it belongs to the operator and is never overwritten.
const Marker = "# nodeprov_managed=true"

// Well-known paths.
const (
	ConfigPath  = "/etc/containerd/config.toml"
	DropinGlob  = "/etc/containerd/conf.d/*.toml"
	CertsDir    = "/etc/containerd/certs.d"
	RunscConfig = "/etc/containerd/runsc.toml"
	ProxyDropin = "/etc/systemd/system/containerd.service.d/http-proxy.conf"
)

// Target says which containerd the config is for.
type Target struct {
	// ConfigVersion is 2 (containerd 1.6/1.7), 3 (2.0-2.3) or 4 (2.4 and
	// later).
	ConfigVersion int
	// Minor is the containerd 2.x minor version; from 2.1 the CNI plugin
	// directory is a list (bin_dirs).
	Minor int
	// SystemdCgroup is the resolved cgroup driver.
	SystemdCgroup bool
	// Credentials are the registry credentials resolved from the spec
	// and the secret files in the root (ResolveCredentials).
	Credentials []Credential
	// Dropins are the operator's drop-ins found in the root
	// (ReadDropins): the CRI ones are merged, the others imported.
	Dropins []Dropin
}

// table is a TOML table under construction.
type table = map[string]any

// Render returns config.toml for the spec's containerd section: typed data
// marshalled by go-toml (sorted, deterministic), the spec's merge patch
// applied, and the managed marker on the first line.
func Render(c *spec.Containerd, t Target) ([]byte, error) {
	data, _, err := RenderConfig(c, t, nil)
	return data, err
}

// RenderConfig is Render that also returns the conflicts between the
// operator's drop-ins and values the spec file sets itself (doc says
// which; nil counts every rendered value as set).
func RenderConfig(c *spec.Containerd, t Target, doc *spec.Document) ([]byte, []string, error) {
	tree, err := renderBase(c, t)
	if err != nil {
		return nil, nil, err
	}
	patch, err := c.Patch.Tree()
	if err != nil {
		return nil, nil, fmt.Errorf("containerd.patch: %w", err)
	}
	if len(patch) > 0 {
		tree = MergePatch(tree, patch).(table)
	}
	var conflicts []string
	tree = mergeDropins(tree, t.Dropins, explicitIn(doc), func(s string) { conflicts = append(conflicts, s) })
	data, err := marshal(tree, dropinLines(t.Dropins))
	return data, conflicts, err
}

// renderBase is the config rendered from the spec's fields, before the
// patch.
func renderBase(c *spec.Containerd, t Target) (table, error) {
	switch t.ConfigVersion {
	case 2:
		return renderV2(c, t), nil
	case 3:
		return renderV3(c, t), nil
	case 4:
		return renderV4(c, t), nil
	}
	return nil, fmt.Errorf("unsupported containerd config version %d", t.ConfigVersion)
}

// PatchOverrides lists the values the spec's patch replaces or deletes
// among those nodeprov renders from the spec's own fields, one line each:
// "KEY: RENDERED -> PATCHED" (or "deleted"). A patch that only adds keys
// overrides nothing.
func PatchOverrides(c *spec.Containerd, t Target) ([]string, error) {
	base, err := renderBase(c, t)
	if err != nil {
		return nil, err
	}
	patch, err := c.Patch.Tree()
	if err != nil {
		return nil, err
	}
	var out []string
	overrides(base, patch, "", &out)
	sort.Strings(out)
	return out, nil
}

func overrides(base table, patch table, prefix string, out *[]string) {
	for k, pv := range patch {
		bv, ok := base[k]
		if !ok {
			continue
		}
		key := tomlKey(prefix, k)
		bt, bIsTable := bv.(table)
		pt, pIsTable := pv.(table)
		switch {
		case pv == nil:
			*out = append(*out, key+": deleted")
		case bIsTable && pIsTable:
			overrides(bt, pt, key, out)
		case !equalTOML(bv, pv):
			*out = append(*out, fmt.Sprintf("%s: %s -> %s", key, tomlText(bv), tomlText(pv)))
		}
	}
}

// tomlKey appends k to a dotted TOML key, quoting it when it is not bare.
func tomlKey(prefix, k string) string {
	if !bareKey.MatchString(k) {
		k = strconv.Quote(k)
	}
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

var bareKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func tomlText(v any) string {
	b, err := toml.Marshal(table{"v": v})
	if err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(b)), "v = "))
}

func equalTOML(a, b any) bool { return tomlText(a) == tomlText(b) }

func marshal(doc table, header string) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(Marker + "\n")
	buf.WriteString("# Rendered by nodeprov from the node spec. Put local changes in " + DropinGlob + ";\n")
	buf.WriteString("# delete the first line to take this file over by hand.\n")
	buf.WriteString(header)
	enc := toml.NewEncoder(&buf)
	enc.SetIndentTables(true)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encode containerd config: %w", err)
	}
	return buf.Bytes(), nil
}

func base(c *spec.Containerd, version int) table {
	return table{
		"version": int64(version),
		"root":    c.Root,
		"state":   c.State,
		"imports": []any{DropinGlob},
		"grpc":    table{"address": c.Address},
	}
}

func renderV2(c *spec.Containerd, t Target) table {
	doc := base(c, 2)
	cri := table{
		"sandbox_image": c.SandboxImage,
		"containerd": table{
			"default_runtime_name": c.DefaultRuntime,
			"runtimes":             runtimes(c, t),
		},
		"cni":      table{"bin_dir": c.CNI.BinDir, "conf_dir": c.CNI.ConfDir},
		"registry": registry(t),
	}
	doc["plugins"] = table{"io.containerd.grpc.v1.cri": cri}
	return doc
}

func renderV3(c *spec.Containerd, t Target) table {
	doc := base(c, 3)
	cni := table{"conf_dir": c.CNI.ConfDir}
	if t.Minor >= 1 {
		cni["bin_dirs"] = []any{c.CNI.BinDir}
	} else {
		cni["bin_dir"] = c.CNI.BinDir
	}
	doc["plugins"] = table{
		"io.containerd.cri.v1.images": table{
			"pinned_images": table{"sandbox": c.SandboxImage},
			"registry":      registry(t),
		},
		"io.containerd.cri.v1.runtime": table{
			"containerd": table{
				"default_runtime_name": c.DefaultRuntime,
				"runtimes":             runtimes(c, t),
			},
			"cni": cni,
		},
	}
	return doc
}

// SandboxImageKey is where the sandbox image lands in config.toml for t.
func SandboxImageKey(t Target) string {
	if t.ConfigVersion == 2 {
		return `plugins."io.containerd.grpc.v1.cri".sandbox_image`
	}
	return `plugins."io.containerd.cri.v1.images".pinned_images.sandbox`
}

// registry is the CRI registry table: hosts.toml files under CertsDir, and
// the credentials of the hosts that need them.
func registry(t Target) table {
	r := table{"config_path": CertsDir}
	if len(t.Credentials) > 0 {
		r["configs"] = registryConfigs(t.Credentials)
	}
	return r
}

// renderV4 is version 3 with containerd 2.4's server plugins: the [grpc]
// table (deprecated in version 4) becomes io.containerd.server.v1.grpc, and
// TTRPC, which no longer derives its address from gRPC's, is set beside it
// (address + ".ttrpc", where shims have always found it).
func renderV4(c *spec.Containerd, t Target) table {
	doc := renderV3(c, t)
	doc["version"] = int64(4)
	delete(doc, "grpc")
	plugins := doc["plugins"].(table)
	plugins["io.containerd.server.v1.grpc"] = table{"address": c.Address}
	plugins["io.containerd.server.v1.ttrpc"] = table{"address": c.Address + ".ttrpc"}
	return doc
}

// runtimes renders runc (always present) and the spec's runtime handlers.
func runtimes(c *spec.Containerd, t Target) table {
	out := table{
		"runc": table{
			"runtime_type": "io.containerd.runc.v2",
			"options":      table{"SystemdCgroup": t.SystemdCgroup},
		},
	}
	names := make([]string, 0, len(c.Runtimes))
	for name := range c.Runtimes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		out[name] = runtime(c.Runtimes[name], t)
	}
	return out
}

func runtime(r spec.Runtime, t Target) table {
	rt := table{"runtime_type": r.Type}
	opts := table{}
	for k, v := range r.Options {
		opts[k] = normalizeTOML(v)
	}
	if r.Path != "" {
		rt["runtime_path"] = r.Path
	}
	if len(r.PodAnnotations) > 0 {
		rt["pod_annotations"] = stringsToAny(r.PodAnnotations)
	}
	if r.PrivilegedWithoutHostDevices {
		rt["privileged_without_host_devices"] = true
	}
	switch r.Type {
	case "io.containerd.runsc.v1":
		opts["TypeUrl"] = "io.containerd.runsc.v1.options"
		opts["ConfigPath"] = or(r.ConfigPath, RunscConfig)
	case "io.containerd.runc.v2":
		if _, set := opts["SystemdCgroup"]; !set {
			opts["SystemdCgroup"] = t.SystemdCgroup
		}
		if r.ConfigPath != "" {
			opts["ConfigPath"] = r.ConfigPath
		}
	default:
		if r.ConfigPath != "" {
			opts["ConfigPath"] = r.ConfigPath
		}
	}
	if r.BinaryName != "" {
		opts["BinaryName"] = r.BinaryName
	}
	if len(opts) > 0 {
		rt["options"] = opts
	}
	return rt
}

// normalizeTOML converts values decoded from YAML (int, []any, map[string]any)
// into the types go-toml encodes deterministically.
func normalizeTOML(v any) any {
	switch x := v.(type) {
	case int:
		return int64(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalizeTOML(e)
		}
		return out
	case map[string]any:
		out := table{}
		for k, e := range x {
			out[k] = normalizeTOML(e)
		}
		return out
	}
	return v
}

func stringsToAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// MergePatch applies an RFC 7396 JSON merge patch to TOML-shaped data: a
// table in the patch merges into the target's table recursively, any other
// value replaces, and a nil value deletes the key.
func MergePatch(target, patch any) any {
	p, ok := patch.(table)
	if !ok {
		return patch
	}
	t, ok := target.(table)
	if !ok {
		t = table{}
	}
	out := make(table, len(t))
	for k, v := range t {
		out[k] = v
	}
	for k, v := range p {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = MergePatch(out[k], v)
	}
	return out
}
