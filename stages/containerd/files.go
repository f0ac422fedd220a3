package containerd

import (
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"sort"
	"strings"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// HostsFile is one registry's certs.d/<host>/hosts.toml.
type HostsFile struct {
	Host string
	Path string
	Data []byte
}

// RenderHosts returns one hosts.toml per registry in the spec, sorted by
// host. Each mirror is one [host."…"] table; duplicates were rejected by
// validation because containerd refuses a file that repeats a host.
func RenderHosts(c *spec.Containerd) ([]HostsFile, error) {
	hosts := make([]string, 0, len(c.Registries))
	for h := range c.Registries {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	var out []HostsFile
	for _, h := range hosts {
		reg := c.Registries[h]
		doc := table{}
		if server := upstreamServer(h, reg.Server); server != "" {
			doc["server"] = server
		}
		mirrors := table{}
		for _, m := range reg.Mirrors {
			caps := m.Capabilities
			if len(caps) == 0 {
				caps = []string{"pull", "resolve"}
			}
			entry := table{"capabilities": stringsToAny(caps)}
			if m.CA != "" {
				entry["ca"] = m.CA
			}
			if m.SkipVerify {
				entry["skip_verify"] = true
			}
			mirrors[m.Host] = entry
		}
		if len(mirrors) > 0 {
			doc["host"] = mirrors
		}
		data, err := marshal(doc, "")
		if err != nil {
			return nil, fmt.Errorf("hosts.toml for %s: %w", h, err)
		}
		out = append(out, HostsFile{Host: h, Path: path.Join(CertsDir, h, "hosts.toml"), Data: data})
	}
	return out, nil
}

// upstreamServer is the registry's own endpoint, used after the mirrors.
func upstreamServer(host, server string) string {
	switch {
	case server != "":
		return server
	case host == "_default":
		return ""
	case host == "docker.io":
		return "https://registry-1.docker.io"
	}
	return "https://" + host
}

// RenderRunsc returns runsc.toml for a gVisor runtime handler: the
// [runsc_config] table holds runsc flags (without the leading dashes).
func RenderRunsc(flags map[string]string) ([]byte, error) {
	doc := table{}
	if len(flags) > 0 {
		cfg := table{}
		for k, v := range flags {
			cfg[k] = v
		}
		doc["runsc_config"] = cfg
	}
	return marshal(doc, "")
}

// RenderProxy returns the containerd.service drop-in that carries the
// proxy environment, and whether it holds credentials (then it must not be
// world-readable).
func RenderProxy(p *spec.Proxy) (data []byte, secret bool) {
	var b strings.Builder
	b.WriteString("# Managed by nodeprov: edits are overwritten by the next apply.\n[Service]\n")
	env := func(name, val string) {
		if val != "" {
			fmt.Fprintf(&b, "Environment=\"%s=%s\"\n", name, systemdEscape(val))
		}
	}
	env("HTTP_PROXY", p.HTTP)
	env("HTTPS_PROXY", p.HTTPS)
	env("NO_PROXY", strings.Join(p.NoProxy, ","))
	for _, u := range []string{p.HTTP, p.HTTPS} {
		if pu, err := url.Parse(u); err == nil && pu.User != nil {
			secret = true
		}
	}
	return []byte(b.String()), secret
}

// systemdEscape escapes a value for a double-quoted Environment= word.
func systemdEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "%", "%%", "$", "$$")
	return r.Replace(s)
}

// RenderConflist returns the bridge network configuration: a bridge with
// host-local IPAM on the spec's subnet, chained with portmap. containerd's
// CRI plugin sets up the loopback interface itself with the loopback plugin
// from the same bin_dir.
func RenderConflist(c *spec.Containerd) ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "nodeprov",
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      "cni0",
				"isGateway":   true,
				"ipMasq":      true,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":   "host-local",
					"ranges": [][]map[string]string{{{"subnet": c.CNI.Subnet}}},
					"routes": []map[string]string{{"dst": defaultRoute(c.CNI.Subnet)}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

func defaultRoute(subnet string) string {
	if strings.Contains(subnet, ":") {
		return "::/0"
	}
	return "0.0.0.0/0"
}

// RenderCrictl returns /etc/crictl.yaml pointing crictl at containerd.
func RenderCrictl(c *spec.Containerd) []byte {
	ep := "unix://" + c.Address
	return []byte("# Managed by nodeprov: edits are overwritten by the next apply.\n" +
		"runtime-endpoint: " + ep + "\nimage-endpoint: " + ep + "\ntimeout: 10\n")
}

// companionFiles plans the files that belong with a managed containerd:
// the CNI bridge conflist (cni.network: bridge) and /etc/crictl.yaml. A
// file the spec's files: section declares itself wins.
func companionFiles(env *plan.Env) ([]*plan.Action, error) {
	c := env.Spec.Containerd
	declared := map[string]bool{}
	for _, f := range env.Spec.Files {
		declared[f.Path] = true
	}
	var actions []*plan.Action
	add := func(resource, p string, data []byte) error {
		if declared[p] {
			return nil
		}
		a, err := plan.PlanFile(env.Root, resource, plan.FileSpec{Path: p, Data: data, Mode: 0o644})
		if err == nil {
			actions = append(actions, a)
		}
		return err
	}
	if c.CNI.Network == "bridge" {
		data, err := RenderConflist(c)
		if err != nil {
			return nil, err
		}
		if err := add("cni "+CNIConflist, path.Join(c.CNI.ConfDir, CNIConflist), data); err != nil {
			return nil, err
		}
	}
	if err := add("crictl "+CrictlConfig, CrictlConfig, RenderCrictl(c)); err != nil {
		return nil, err
	}
	return actions, nil
}
