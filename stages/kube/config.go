// Package kube is nodeprov's small Kubernetes API client: a kubeconfig
// loader for the fields a node-side credential uses, a paginated Node list,
// and the grouping of Nodes that share an identity (`nodeprov fleet check`
// and the machine-id stage's machineID.fleet). It reads no file itself:
// callers hand it the kubeconfig and a reader for the files it names, so
// that file access stays in stages/host.
//
// Why not client-go: k8s.io/client-go with its clientcmd loader makes the
// node binary larger than its 15 MB budget for two GET requests (the
// measured figures are in the commit that added this package and in
// README.md "Fleets").
package kube

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxConfigSize bounds a kubeconfig and each file it names.
const maxConfigSize = 4 << 20

// ReadFunc reads a file a kubeconfig names (its certificate authority,
// client certificate and key, token file), by an absolute path. A missing
// file is an error that names the path.
type ReadFunc func(path string) ([]byte, error)

// Config is what nodeprov uses of a kubeconfig: the current context's
// cluster and user, with every file already read. Its String never shows
// a token or a key.
type Config struct {
	// File is the kubeconfig's path, for messages.
	File string
	// Context, Cluster and User are the names the kubeconfig gives them.
	Context, Cluster, User string
	// Server is the API server's URL (cluster.server).
	Server *url.URL
	// CA is the PEM of the certificate authorities the server's
	// certificate must chain to; nil trusts the system's.
	CA []byte
	// InsecureSkipVerify skips verifying the server's certificate.
	InsecureSkipVerify bool
	// TLSServerName overrides the name the certificate must carry.
	TLSServerName string
	// ProxyURL is cluster.proxy-url; nil uses the environment's proxy.
	ProxyURL *url.URL
	// ClientCert and ClientKey are PEM; both or neither are set.
	ClientCert, ClientKey []byte
	// Token is a bearer token (user.token or the contents of
	// user.tokenFile).
	Token string
}

// String names the kubeconfig, context and server; never a credential.
func (c *Config) String() string {
	return fmt.Sprintf("%s (context %q, cluster %q, user %q, server %s)", c.File, c.Context, c.Cluster, c.User, c.Server)
}

// Credential says how the config authenticates, for messages: "client
// certificate", "bearer token" or "no credentials".
func (c *Config) Credential() string {
	switch {
	case c.ClientCert != nil && c.Token != "":
		return "client certificate and bearer token"
	case c.ClientCert != nil:
		return "client certificate"
	case c.Token != "":
		return "bearer token"
	}
	return "no credentials"
}

// ConfigError is a problem in a kubeconfig at a position. It never quotes
// a value: values of a kubeconfig may be secrets.
type ConfigError struct {
	File         string
	Line, Column int
	// Path is the key path, such as users[0].user.client-key.
	Path    string
	Message string
}

func (e *ConfigError) Error() string {
	pos := e.File
	if e.Line > 0 {
		pos = fmt.Sprintf("%s:%d:%d", e.File, e.Line, e.Column)
	}
	if e.Path == "" {
		return pos + ": " + e.Message
	}
	return pos + ": " + e.Path + ": " + e.Message
}

// LoadConfig parses the kubeconfig data read from file and resolves its
// current context (or, when current-context is unset, its only context).
// Relative paths in it are relative to file's directory, as kubectl takes
// them. Fields nodeprov does not use (preferences, extensions, namespace)
// are ignored; credentials it cannot use (exec and auth-provider plugins,
// basic auth, impersonation) are errors rather than a silent anonymous
// request.
func LoadConfig(file string, data []byte, read ReadFunc) (*Config, error) {
	if len(data) > maxConfigSize {
		return nil, &ConfigError{File: file, Message: fmt.Sprintf("%d bytes; a kubeconfig is at most %d", len(data), maxConfigSize)}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		// yaml's syntax errors carry a line, never the file's contents.
		return nil, &ConfigError{File: file, Message: "not YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	l := &loader{file: file, dir: path.Dir(file), read: read}
	if len(doc.Content) == 0 {
		return nil, &ConfigError{File: file, Message: "empty kubeconfig"}
	}
	top, err := l.mapping(doc.Content[0], "")
	if err != nil {
		return nil, err
	}
	ctxName, ctxPath, ctxNode, err := l.current(top)
	if err != nil {
		return nil, err
	}
	cfg := &Config{File: file, Context: ctxName}
	var clusterPath, userPath string
	var clusterNode, userNode *yaml.Node
	if cfg.Cluster, clusterPath, clusterNode, err = l.ref(top, ctxNode, ctxPath, "cluster", "clusters"); err != nil {
		return nil, err
	}
	if cfg.User, userPath, userNode, err = l.ref(top, ctxNode, ctxPath, "user", "users"); err != nil {
		return nil, err
	}
	if err := l.cluster(cfg, clusterPath, clusterNode); err != nil {
		return nil, err
	}
	if err := l.user(cfg, userPath, userNode); err != nil {
		return nil, err
	}
	return cfg, nil
}

// loader walks one kubeconfig.
type loader struct {
	file, dir string
	read      ReadFunc
}

func (l *loader) errAt(n *yaml.Node, p, format string, args ...any) error {
	e := &ConfigError{File: l.file, Path: p, Message: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

// mapping returns the keys and values of a mapping node (nil for an
// absent or null value).
func (l *loader) mapping(n *yaml.Node, p string) (map[string]*yaml.Node, error) {
	n = deref(n)
	if n == nil || n.Tag == "!!null" {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, l.errAt(n, p, "expected a mapping")
	}
	m := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		m[n.Content[i].Value] = n.Content[i+1]
	}
	return m, nil
}

// str returns a scalar string value ("" when absent).
func (l *loader) str(m map[string]*yaml.Node, key, p string) (string, error) {
	n := deref(m[key])
	if n == nil || n.Tag == "!!null" {
		return "", nil
	}
	if n.Kind != yaml.ScalarNode {
		return "", l.errAt(n, join(p, key), "expected a string")
	}
	return n.Value, nil
}

// boolean returns a scalar boolean value (false when absent).
func (l *loader) boolean(m map[string]*yaml.Node, key, p string) (bool, error) {
	n := deref(m[key])
	if n == nil || n.Tag == "!!null" {
		return false, nil
	}
	var b bool
	if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
		return false, l.errAt(n, join(p, key), "expected true or false")
	}
	return b, nil
}

// current finds the current context: current-context, or the only one.
func (l *loader) current(top map[string]*yaml.Node) (name, p string, ctx *yaml.Node, err error) {
	name, err = l.str(top, "current-context", "")
	if err != nil {
		return "", "", nil, err
	}
	list := deref(top["contexts"])
	if name == "" {
		if list == nil || list.Kind != yaml.SequenceNode || len(list.Content) != 1 {
			return "", "", nil, l.errAt(nil, "current-context", "not set, and the kubeconfig does not have exactly one context to take instead")
		}
		named, err := l.mapping(list.Content[0], "contexts[0]")
		if err != nil {
			return "", "", nil, err
		}
		if name, err = l.str(named, "name", "contexts[0]"); err != nil {
			return "", "", nil, err
		}
	}
	p, n, err := l.named(top, "contexts", name)
	if err != nil {
		return "", "", nil, err
	}
	if n == nil {
		return "", "", nil, l.errAt(top["current-context"], "current-context", "no context named %q in contexts", name)
	}
	return name, p, n, nil
}

// named finds the entry called name in one of the kubeconfig's lists
// (clusters, users, contexts) and returns its path and inner mapping (the
// value of its "cluster", "user" or "context" key).
func (l *loader) named(top map[string]*yaml.Node, list, name string) (string, *yaml.Node, error) {
	seq := deref(top[list])
	if seq == nil || seq.Tag == "!!null" {
		return "", nil, nil
	}
	if seq.Kind != yaml.SequenceNode {
		return "", nil, l.errAt(seq, list, "expected a list")
	}
	inner := strings.TrimSuffix(list, "s")
	for i, item := range seq.Content {
		p := fmt.Sprintf("%s[%d]", list, i)
		m, err := l.mapping(item, p)
		if err != nil {
			return "", nil, err
		}
		n, err := l.str(m, "name", p)
		if err != nil {
			return "", nil, err
		}
		if n == name {
			v := m[inner]
			if v == nil {
				return "", nil, l.errAt(item, p, "has no %q key", inner)
			}
			return p + "." + inner, v, nil
		}
	}
	return "", nil, nil
}

// ref resolves the context's cluster or user name to its entry's path
// and node.
func (l *loader) ref(top map[string]*yaml.Node, ctxNode *yaml.Node, ctxPath, key, list string) (name, p string, n *yaml.Node, err error) {
	ctx, err := l.mapping(ctxNode, ctxPath)
	if err != nil {
		return "", "", nil, err
	}
	if name, err = l.str(ctx, key, ctxPath); err != nil {
		return "", "", nil, err
	}
	if name == "" {
		return "", "", nil, l.errAt(deref(ctxNode), join(ctxPath, key), "not set")
	}
	if p, n, err = l.named(top, list, name); err != nil {
		return "", "", nil, err
	}
	if n == nil {
		return "", "", nil, l.errAt(ctx[key], join(ctxPath, key), "no %s named %q in %s", key, name, list)
	}
	return name, p, n, nil
}

// cluster fills the server and its TLS settings.
func (l *loader) cluster(cfg *Config, p string, n *yaml.Node) error {
	m, err := l.mapping(n, p)
	if err != nil {
		return err
	}
	server, err := l.str(m, "server", p)
	if err != nil {
		return err
	}
	if cfg.Server, err = parseServer(server); err != nil {
		return l.errAt(orNode(m["server"], n), join(p, "server"), "%v", err)
	}
	if cfg.InsecureSkipVerify, err = l.boolean(m, "insecure-skip-tls-verify", p); err != nil {
		return err
	}
	if cfg.TLSServerName, err = l.str(m, "tls-server-name", p); err != nil {
		return err
	}
	proxy, err := l.str(m, "proxy-url", p)
	if err != nil {
		return err
	}
	if proxy != "" {
		u, err := url.Parse(proxy)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "socks5") || u.Host == "" {
			return l.errAt(m["proxy-url"], join(p, "proxy-url"), "expected an http, https or socks5 URL with a host")
		}
		cfg.ProxyURL = u
	}
	if cfg.CA, err = l.fileOrData(m, "certificate-authority", p); err != nil {
		return err
	}
	if cfg.CA != nil && cfg.InsecureSkipVerify {
		return l.errAt(m["insecure-skip-tls-verify"], join(p, "insecure-skip-tls-verify"), "set together with a certificate authority; use one or the other")
	}
	return nil
}

// parseServer checks cluster.server: an http(s) URL with a host and no
// user information (which would be a credential in every message).
func parseServer(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("not set: the API server's URL, such as https://10.0.0.1:6443")
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, errors.New("expected an https:// URL with a host, such as https://10.0.0.1:6443")
	}
	if u.User != nil {
		return nil, errors.New("the URL carries user information; put credentials in the user entry")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("the URL has a query or fragment; give only scheme, host and path")
	}
	return u, nil
}

// user fills the client certificate and bearer token.
func (l *loader) user(cfg *Config, p string, n *yaml.Node) error {
	m, err := l.mapping(n, p)
	if err != nil {
		return err
	}
	for _, key := range []string{"exec", "auth-provider", "username", "password", "as", "as-groups", "as-uid", "as-user-extra"} {
		if v := deref(m[key]); v != nil && v.Tag != "!!null" {
			return l.errAt(v, join(p, key), "not supported by nodeprov (it runs no credential plugin, sends no basic auth and impersonates no one): use a client certificate or a bearer token")
		}
	}
	if cfg.ClientCert, err = l.fileOrData(m, "client-certificate", p); err != nil {
		return err
	}
	if cfg.ClientKey, err = l.fileOrData(m, "client-key", p); err != nil {
		return err
	}
	if (cfg.ClientCert == nil) != (cfg.ClientKey == nil) {
		return l.errAt(n, p, "client-certificate and client-key come together; one of them is missing")
	}
	if cfg.Token, err = l.str(m, "token", p); err != nil {
		return err
	}
	tokenFile, err := l.str(m, "tokenFile", p)
	if err != nil {
		return err
	}
	if tokenFile != "" {
		// As in client-go, the file wins over an inline token: it is the
		// one a rotation keeps current.
		b, err := l.readFile(m["tokenFile"], join(p, "tokenFile"), tokenFile)
		if err != nil {
			return err
		}
		if cfg.Token = strings.TrimSpace(string(b)); cfg.Token == "" {
			return l.errAt(m["tokenFile"], join(p, "tokenFile"), "%s is empty", l.abs(tokenFile))
		}
	}
	if strings.ContainsAny(cfg.Token, "\r\n") {
		return l.errAt(orNode(m["token"], m["tokenFile"]), join(p, "token"), "the token contains a line break")
	}
	return nil
}

// fileOrData reads key-data (base64) or key (a file path); -data wins, as
// in kubectl.
func (l *loader) fileOrData(m map[string]*yaml.Node, key, p string) ([]byte, error) {
	data, err := l.str(m, key+"-data", p)
	if err != nil {
		return nil, err
	}
	if data != "" {
		b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(data), ""))
		if err != nil {
			return nil, l.errAt(m[key+"-data"], join(p, key+"-data"), "not base64: %v", err)
		}
		return b, nil
	}
	file, err := l.str(m, key, p)
	if err != nil || file == "" {
		return nil, err
	}
	return l.readFile(m[key], join(p, key), file)
}

// readFile reads a file the kubeconfig names, relative to its directory.
func (l *loader) readFile(n *yaml.Node, p, name string) ([]byte, error) {
	abs := l.abs(name)
	b, err := l.read(abs)
	if err != nil {
		return nil, l.errAt(n, p, "%v", err)
	}
	if len(b) > maxConfigSize {
		return nil, l.errAt(n, p, "%s is %d bytes; at most %d", abs, len(b), maxConfigSize)
	}
	return bytes.Clone(b), nil
}

func (l *loader) abs(name string) string {
	if path.IsAbs(name) {
		return path.Clean(name)
	}
	return path.Join(l.dir, name)
}

// deref follows a YAML alias and unwraps a document node.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && (n.Kind == yaml.AliasNode || n.Kind == yaml.DocumentNode) {
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		} else if len(n.Content) > 0 {
			n = n.Content[0]
		} else {
			return nil
		}
	}
	return n
}

func orNode(a, b *yaml.Node) *yaml.Node {
	if a != nil {
		return a
	}
	return b
}

func join(p, key string) string {
	if p == "" {
		return key
	}
	return p + "." + key
}
