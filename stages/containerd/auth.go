package containerd

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
)

// Credential is the resolved credentials of one registry endpoint, keyed
// the way containerd's CRI plugin looks them up: by the host[:port] it is
// about to contact (a mirror, or the registry's upstream server).
type Credential struct {
	Host          string
	Username      string
	Password      string
	IdentityToken string
}

// ResolveCredentials collects the spec's registry credentials, reading
// passwordFile and identityTokenFile inside root. Two entries for one
// endpoint host must agree. A secret file that others can read is a
// warning (through warnf): the secret is only as private as its file.
func ResolveCredentials(root *host.Root, c *spec.Containerd, warnf func(string, ...any)) ([]Credential, error) {
	byHost := map[string]Credential{}
	from := map[string]string{}
	add := func(where, endpoint string, a *spec.RegistryAuth) error {
		if a == nil {
			return nil
		}
		u, err := url.Parse(endpoint)
		if err != nil || u.Host == "" {
			return fmt.Errorf("%s: cannot tell the host of %s", where, endpoint)
		}
		cr := Credential{Host: u.Host, Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken}
		if cr.Password, err = secretValue(root, where+".passwordFile", a.PasswordFile, cr.Password, warnf); err != nil {
			return err
		}
		if cr.IdentityToken, err = secretValue(root, where+".identityTokenFile", a.IdentityTokenFile, cr.IdentityToken, warnf); err != nil {
			return err
		}
		if prev, ok := byHost[cr.Host]; ok && prev != cr {
			return fmt.Errorf("%s and %s give different credentials for %s, and containerd keeps one per host", from[cr.Host], where, cr.Host)
		}
		byHost[cr.Host], from[cr.Host] = cr, where
		return nil
	}
	for _, h := range slices.Sorted(maps.Keys(c.Registries)) {
		reg := c.Registries[h]
		where := fmt.Sprintf("containerd.registries[%q]", h)
		if err := add(where+".auth", upstreamServer(h, reg.Server), reg.Auth); err != nil {
			return nil, err
		}
		for i, m := range reg.Mirrors {
			if err := add(fmt.Sprintf("%s.mirrors[%d].auth", where, i), m.Host, m.Auth); err != nil {
				return nil, err
			}
		}
	}
	out := make([]Credential, 0, len(byHost))
	for _, h := range slices.Sorted(maps.Keys(byHost)) {
		out = append(out, byHost[h])
	}
	return out, nil
}

// secretValue returns inline when file is empty, else the file's contents
// inside root without one trailing newline.
func secretValue(root *host.Root, where, file, inline string, warnf func(string, ...any)) (string, error) {
	if file == "" {
		return inline, nil
	}
	st, err := root.Lstat(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", where, err)
	}
	if !st.Exists {
		return "", fmt.Errorf("%s: %s does not exist in the target root", where, file)
	}
	data, _, err := root.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", where, err)
	}
	if st.Mode&0o004 != 0 && warnf != nil {
		warnf("%s: %s is readable by every user (mode %04o); make it 0600", where, file, uint32(st.Mode.Perm()))
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	if s == "" || strings.ContainsAny(s, "\x00\n\r") {
		return "", fmt.Errorf("%s: %s must hold the secret on one line", where, file)
	}
	return s, nil
}

// registryConfigs renders credentials where the CRI plugin reads them:
// registry.configs."<host>".auth (username and password, or
// identitytoken), under io.containerd.grpc.v1.cri (config version 2) or
// io.containerd.cri.v1.images (version 3). Both keep reading these next to
// config_path; containerd deprecated the table but not the credentials,
// which hosts.toml has no place for.
func registryConfigs(creds []Credential) table {
	configs := table{}
	for _, cr := range creds {
		auth := table{}
		if cr.IdentityToken != "" {
			auth["identitytoken"] = cr.IdentityToken
		} else {
			auth["username"], auth["password"] = cr.Username, cr.Password
		}
		configs[cr.Host] = table{"auth": auth}
	}
	return configs
}

// HoldsSecret reports whether a rendered TOML file has a non-empty value
// under any key spec.IsSecretKey names: registry credentials nodeprov
// rendered, or ones an operator's patch added. Such a file is written 0600.
func HoldsSecret(data []byte) bool {
	var doc any
	if toml.Unmarshal(data, &doc) != nil {
		return true // cannot tell: treat as secret
	}
	return holdsSecret(doc)
}

func holdsSecret(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if spec.IsSecretKey(k) {
				if s, ok := e.(string); !ok || s != "" {
					if _, isTable := e.(map[string]any); !isTable {
						return true
					}
				}
			}
			if holdsSecret(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if holdsSecret(e) {
				return true
			}
		}
	}
	return false
}
