package kube

import (
	"encoding/base64"
	"fmt"
	"io/fs"
	"strings"
	"testing"
)

// secret values the tests plant; no error may show them.
const (
	testToken = "abcdef.0123456789abcdef"
	testKey   = "-----BEGIN EC PRIVATE KEY-----\nSECRETKEYMATERIAL\n-----END EC PRIVATE KEY-----\n"
	testCert  = "-----BEGIN CERTIFICATE-----\nCERT\n-----END CERTIFICATE-----\n"
	testCA    = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"
)

func files(m map[string]string) ReadFunc {
	return func(p string) ([]byte, error) {
		if s, ok := m[p]; ok {
			return []byte(s), nil
		}
		return nil, fmt.Errorf("open %s: %w", p, fs.ErrNotExist)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestLoadConfig(t *testing.T) {
	disk := files(map[string]string{
		"/etc/kubernetes/pki/ca.crt":      testCA,
		"/etc/kubernetes/fleet.crt":       testCert,
		"/etc/kubernetes/fleet.key":       testKey,
		"/var/run/secrets/token":          testToken + "\n",
		"/etc/kubernetes/empty-token":     "\n",
		"/etc/kubernetes/rel/ca.crt":      testCA,
		"/etc/kubernetes/rel/sub/client":  testCert,
		"/etc/kubernetes/rel/sub/client2": testKey,
	})
	full := `apiVersion: v1
kind: Config
current-context: fleet
contexts:
- name: other
  context: {cluster: nope, user: nope}
- name: fleet
  context: {cluster: prod, user: reader, namespace: kube-system}
clusters:
- name: prod
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority: pki/ca.crt
users:
- name: reader
  user:
    client-certificate: /etc/kubernetes/fleet.crt
    client-key: fleet.key
preferences: {}
`
	cases := []struct {
		name    string
		src     string
		check   func(t *testing.T, c *Config)
		wantErr string
	}{
		{name: "files relative to the kubeconfig", src: full, check: func(t *testing.T, c *Config) {
			if c.Server.String() != "https://10.0.0.1:6443" || string(c.CA) != testCA || string(c.ClientCert) != testCert || string(c.ClientKey) != testKey {
				t.Errorf("got %+v", c)
			}
			if c.Context != "fleet" || c.Cluster != "prod" || c.User != "reader" || c.Credential() != "client certificate" {
				t.Errorf("names: %s, credential %s", c, c.Credential())
			}
		}},
		{name: "inline data and the only context", src: `clusters: [{name: c, cluster: {server: "https://api:6443", certificate-authority-data: ` + b64(testCA) + `}}]
users: [{name: u, user: {client-certificate-data: ` + b64(testCert) + `, client-key-data: ` + b64(testKey) + `}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
`, check: func(t *testing.T, c *Config) {
			if string(c.CA) != testCA || string(c.ClientKey) != testKey || c.Context != "x" {
				t.Errorf("got %s", c)
			}
		}},
		{name: "token file wins over the inline token", src: `current-context: x
clusters: [{name: c, cluster: {server: "https://api", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: old, tokenFile: /var/run/secrets/token}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
`, check: func(t *testing.T, c *Config) {
			if c.Token != testToken || !c.InsecureSkipVerify || c.Credential() != "bearer token" {
				t.Errorf("token %q, insecure %v", c.Token, c.InsecureSkipVerify)
			}
		}},
		{name: "server with a path", src: `current-context: x
clusters: [{name: c, cluster: {server: "https://lb.example/k8s/", proxy-url: "http://proxy:3128"}}]
users: [{name: u, user: {token: ` + testToken + `}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
`, check: func(t *testing.T, c *Config) {
			if c.Server.Path != "/k8s/" || c.ProxyURL.Host != "proxy:3128" {
				t.Errorf("server %s, proxy %s", c.Server, c.ProxyURL)
			}
		}},
		{name: "not YAML", src: "clusters: [\n", wantErr: "/etc/kubernetes/fleet.conf: not YAML: line 1"},
		{name: "empty", src: "", wantErr: "/etc/kubernetes/fleet.conf: empty kubeconfig"},
		{name: "no current context among several", src: strings.Replace(full, "current-context: fleet\n", "", 1),
			wantErr: "/etc/kubernetes/fleet.conf: current-context: not set, and the kubeconfig does not have exactly one context"},
		{name: "unknown current context", src: strings.Replace(full, "current-context: fleet", "current-context: staging", 1),
			wantErr: `/etc/kubernetes/fleet.conf:3:18: current-context: no context named "staging" in contexts`},
		{name: "context without a user", src: strings.Replace(full, "cluster: prod, user: reader, namespace", "cluster: prod, namespace", 1),
			wantErr: "/etc/kubernetes/fleet.conf:8:12: contexts[1].context.user: not set"},
		{name: "unknown cluster", src: strings.Replace(full, "cluster: prod, user", "cluster: dev, user", 1),
			wantErr: `/etc/kubernetes/fleet.conf:8:22: contexts[1].context.cluster: no cluster named "dev" in clusters`},
		{name: "missing file", src: strings.Replace(full, "pki/ca.crt", "pki/nope.crt", 1),
			wantErr: "/etc/kubernetes/fleet.conf:13:28: clusters[0].cluster.certificate-authority: open /etc/kubernetes/pki/nope.crt: file does not exist"},
		{name: "no server", src: strings.Replace(full, "    server: https://10.0.0.1:6443\n", "", 1),
			wantErr: "/etc/kubernetes/fleet.conf:12:5: clusters[0].cluster.server: not set"},
		{name: "server not a URL", src: strings.Replace(full, "https://10.0.0.1:6443", "10.0.0.1:6443", 1),
			wantErr: "/etc/kubernetes/fleet.conf:12:13: clusters[0].cluster.server: expected an https:// URL"},
		{name: "server with user information", src: strings.Replace(full, "https://10.0.0.1", "https://admin:hunter2@10.0.0.1", 1),
			wantErr: "clusters[0].cluster.server: the URL carries user information"},
		{name: "key without certificate", src: strings.Replace(full, "    client-certificate: /etc/kubernetes/fleet.crt\n", "", 1),
			wantErr: "/etc/kubernetes/fleet.conf:17:5: users[0].user: client-certificate and client-key come together"},
		{name: "bad base64", src: strings.Replace(full, "client-key: fleet.key", "client-key-data: '"+testToken+"!'", 1),
			wantErr: "/etc/kubernetes/fleet.conf:18:22: users[0].user.client-key-data: not base64"},
		{name: "exec plugin", src: strings.Replace(full, "client-key: fleet.key", "client-key: fleet.key\n    exec: {command: aws, args: [eks, get-token]}", 1),
			wantErr: "/etc/kubernetes/fleet.conf:19:11: users[0].user.exec: not supported by nodeprov"},
		{name: "password", src: strings.Replace(full, "client-key: fleet.key", "client-key: fleet.key\n    username: admin\n    password: hunter2", 1),
			wantErr: "users[0].user.username: not supported"},
		{name: "empty token file", src: strings.Replace(full, "client-key: fleet.key", "client-key: fleet.key\n    tokenFile: empty-token", 1),
			wantErr: "/etc/kubernetes/fleet.conf:19:16: users[0].user.tokenFile: /etc/kubernetes/empty-token is empty"},
		{name: "CA and insecure", src: strings.Replace(full, "    certificate-authority:", "    insecure-skip-tls-verify: true\n    certificate-authority:", 1),
			wantErr: "clusters[0].cluster.insecure-skip-tls-verify: set together with a certificate authority"},
		{name: "insecure not a boolean", src: strings.Replace(full, "    certificate-authority: pki/ca.crt", "    insecure-skip-tls-verify: sometimes", 1),
			wantErr: "/etc/kubernetes/fleet.conf:13:31: clusters[0].cluster.insecure-skip-tls-verify: expected true or false"},
		{name: "clusters not a list", src: strings.Replace(full, "clusters:\n- name: prod\n  cluster:\n    server: https://10.0.0.1:6443\n    certificate-authority: pki/ca.crt\n", "clusters: {}\n", 1),
			wantErr: "/etc/kubernetes/fleet.conf:9:11: clusters: expected a list"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := LoadConfig("/etc/kubernetes/fleet.conf", []byte(tc.src), disk)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
				}
				for _, secret := range []string{testToken, "SECRETKEYMATERIAL", "hunter2"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("the error shows a secret: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
			if s := c.String(); strings.Contains(s, testToken) || strings.Contains(s, "SECRETKEYMATERIAL") {
				t.Errorf("String shows a secret: %s", s)
			}
		})
	}
}

func TestLoadConfigRelativeSubdirectory(t *testing.T) {
	src := `current-context: x
clusters: [{name: c, cluster: {server: "https://api", certificate-authority: ./ca.crt}}]
users: [{name: u, user: {client-certificate: sub/client, client-key: sub/../sub/client2}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
`
	var read []string
	c, err := LoadConfig("/etc/kubernetes/rel/kubeconfig", []byte(src), func(p string) ([]byte, error) {
		read = append(read, p)
		return files(map[string]string{"/etc/kubernetes/rel/ca.crt": testCA, "/etc/kubernetes/rel/sub/client": testCert, "/etc/kubernetes/rel/sub/client2": testKey})(p)
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "/etc/kubernetes/rel/ca.crt /etc/kubernetes/rel/sub/client /etc/kubernetes/rel/sub/client2"
	if got := strings.Join(read, " "); got != want || string(c.ClientKey) != testKey {
		t.Errorf("read %s, want %s", got, want)
	}
}
