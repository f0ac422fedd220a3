package containerd

import (
	"fmt"
	"net/url"
	"path"
	"sort"
	"strings"

	"github.com/nodeprov/nodeprov/spec"
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
