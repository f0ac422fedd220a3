package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// kubeCluster is a real kube-apiserver (built from k8s.io/kubernetes) with
// a real etcd (Debian's etcd-server), both on the loopback of a network
// namespace the test created: no port is shared with anything else on the
// machine, and no packet leaves it. The test reaches them through sockets
// made inside the namespace; nodeprov runs inside it (cluster.nodeprov).
type kubeCluster struct {
	ns  *netns
	dir string
	pki *testPKI
	// admin is a client in system:masters, for setting the cluster up.
	admin *http.Client
}

// Fixed addresses: the namespace is the test's alone.
const (
	kubeServer   = "https://127.0.0.1:6443"
	etcdClient   = "http://127.0.0.1:2379"
	etcdPeer     = "http://127.0.0.1:2380"
	bootstrapID  = "abcdef"
	bootstrapTok = bootstrapID + ".0123456789abcdef"
)

// startKubeCluster starts etcd and kube-apiserver and waits until the API
// server is ready. Both are stopped, and their files removed, when the test
// ends, also when it fails.
func startKubeCluster(t *testing.T) *kubeCluster {
	t.Helper()
	requireRoot(t)
	for _, tool := range []string{"etcd", "nsenter", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (make test installs it): %v", tool, err)
		}
	}
	apiserver := kubeAPIServerBinary(t)
	dir, err := os.MkdirTemp("", "nodeprov-kube-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &kubeCluster{ns: newNetns(t), dir: dir, pki: newTestPKI(t)}
	c.writeServerFiles(t)

	c.start(t, "etcd", "etcd", "--name", "default", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdClient, "--advertise-client-urls", etcdClient,
		"--listen-peer-urls", etcdPeer, "--initial-advertise-peer-urls", etcdPeer,
		"--initial-cluster", "default="+etcdPeer)
	c.start(t, "kube-apiserver", apiserver,
		"--etcd-servers", etcdClient,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", "6443",
		"--tls-cert-file", filepath.Join(dir, "server.crt"), "--tls-private-key-file", filepath.Join(dir, "server.key"),
		"--client-ca-file", c.pki.caFile,
		"--service-account-key-file", filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file", filepath.Join(dir, "sa.key"),
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-cluster-ip-range", "10.96.0.0/24",
		"--authorization-mode", "RBAC",
		"--enable-bootstrap-token-auth",
		// The endpoint of the kubernetes Service would be a loopback
		// address, which Endpoints refuse; nothing here needs it.
		"--endpoint-reconciler-type", "none",
		"--cert-dir", filepath.Join(dir, "cert"))

	adminCert, adminKey := c.clientCert(t, "nodeprov-e2e-admin", "system:masters")
	pair, err := tls.X509KeyPair(adminCert, adminKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.pki.ca)
	c.admin = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext:     c.dialContext,
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}},
	}}
	c.waitReady(t)
	return c
}

// dialContext opens connections inside the namespace.
func (c *kubeCluster) dialContext(ctx context.Context, network, addr string) (conn net.Conn, err error) {
	err = c.ns.do(func() error {
		conn, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// start runs a server inside the namespace with its output in
// dir/name.log; it is killed and reaped when the test ends.
func (c *kubeCluster) start(t *testing.T, name, bin string, args ...string) {
	t.Helper()
	logf, err := os.Create(filepath.Join(c.dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", append([]string{"--net=" + c.ns.path(), "--", bin}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			t.Logf("%s log (last lines):\n%s", name, tail(readFile(t, logf.Name()), 15))
		}
	})
}

// waitReady polls /readyz until the API server answers ok.
func (c *kubeCluster) waitReady(t *testing.T) {
	t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < 2*time.Minute {
		resp, err := c.admin.Get(kubeServer + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Logf("kube-apiserver %s ready in %s", kubeVersion, time.Since(start).Round(100*time.Millisecond))
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, tail(string(b), 5))
		} else {
			last = err.Error()
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("kube-apiserver not ready after 2m: %s\n%s", last, tail(readFile(t, filepath.Join(c.dir, "kube-apiserver.log")), 20))
}

// writeServerFiles writes the API server's serving certificate and key
// and the service-account signing key.
func (c *kubeCluster) writeServerFiles(t *testing.T) {
	t.Helper()
	cert, key := c.pki.issue(t, pkix.Name{CommonName: "kube-apiserver"}, x509.ExtKeyUsageServerAuth,
		[]string{"localhost", "kubernetes", "kubernetes.default.svc"}, "127.0.0.1", "10.96.0.1")
	writeFileT(t, filepath.Join(c.dir, "server.crt"), cert)
	writeFileT(t, filepath.Join(c.dir, "server.key"), key)
	sa, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(sa)
	if err != nil {
		t.Fatal(err)
	}
	writeFileT(t, filepath.Join(c.dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
}

// clientCert issues a client certificate: the API server takes the common
// name as the user and the organizations as groups.
func (c *kubeCluster) clientCert(t *testing.T, user string, groups ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	return c.pki.issue(t, pkix.Name{CommonName: user, Organization: groups}, x509.ExtKeyUsageClientAuth, nil)
}

// issue makes a certificate signed by the test CA, PEM-encoded with its
// key.
func (p *testPKI) issue(t *testing.T, subject pkix.Name, usage x509.ExtKeyUsage, dnsNames []string, ips ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		DNSNames:     dnsNames,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// kubeconfig is one identity's kubeconfig: a user entry's YAML (its
// inline lines) and the cluster's server and CA.
type kubeconfig struct {
	server string
	caPath string // certificate-authority as written (may be relative)
	user   string // the users[0].user mapping, in flow style
}

func (k kubeconfig) String() string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: e2e
contexts:
- name: e2e
  context: {cluster: e2e, user: e2e-user}
clusters:
- name: e2e
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: e2e-user
  user: %s
`, k.server, k.caPath, k.user)
}

// do sends one request as the admin and fails the test unless the answer
// is want.
func (c *kubeCluster) do(t *testing.T, method, path, contentType string, body any, want int) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, kubeServer+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.admin.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
}

// createNode creates a Node, then sets the identity its kubelet would
// report: status is a subresource, which a create ignores.
func (c *kubeCluster) createNode(t *testing.T, name, machineID, systemUUID string) {
	t.Helper()
	c.do(t, http.MethodPost, "/api/v1/nodes", "application/json",
		map[string]any{"apiVersion": "v1", "kind": "Node", "metadata": map[string]any{"name": name}}, http.StatusCreated)
	if machineID == "" && systemUUID == "" {
		return
	}
	c.do(t, http.MethodPatch, "/api/v1/nodes/"+name+"/status", "application/merge-patch+json",
		map[string]any{"status": map[string]any{"nodeInfo": map[string]any{"machineID": machineID, "systemUUID": systemUUID}}}, http.StatusOK)
}

// deleteNode deletes a Node.
func (c *kubeCluster) deleteNode(t *testing.T, name string) {
	t.Helper()
	c.do(t, http.MethodDelete, "/api/v1/nodes/"+name, "", nil, http.StatusOK)
}

// grantNodeReader binds a ClusterRole with nodes get and list to user:
// the RBAC README.md documents for the fleet check.
func (c *kubeCluster) grantNodeReader(t *testing.T, user string) {
	t.Helper()
	c.do(t, http.MethodPost, "/apis/rbac.authorization.k8s.io/v1/clusterroles", "application/json", map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
		"metadata": map[string]any{"name": "nodeprov-fleet"},
		"rules":    []any{map[string]any{"apiGroups": []string{""}, "resources": []string{"nodes"}, "verbs": []string{"get", "list"}}},
	}, http.StatusCreated)
	c.do(t, http.MethodPost, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", "application/json", map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
		"metadata": map[string]any{"name": "nodeprov-fleet"},
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "nodeprov-fleet"},
		"subjects": []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}},
	}, http.StatusCreated)
}

// createBootstrapToken creates a real kubelet bootstrap token (a Secret
// the API server's bootstrap token authenticator reads): its identity is
// system:bootstrap:<id> in system:bootstrappers, as a node joining with
// kubeadm has.
func (c *kubeCluster) createBootstrapToken(t *testing.T) {
	t.Helper()
	// kube-system is created by a controller of the API server, which
	// may run after /readyz first says ok.
	for start := time.Now(); ; time.Sleep(200 * time.Millisecond) {
		resp, err := c.admin.Get(kubeServer + "/api/v1/namespaces/kube-system")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("namespace kube-system does not exist after a minute (%v)", err)
		}
	}
	id, secret, _ := strings.Cut(bootstrapTok, ".")
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	c.do(t, http.MethodPost, "/api/v1/namespaces/kube-system/secrets", "application/json", map[string]any{
		"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
		"metadata": map[string]any{"name": "bootstrap-token-" + id, "namespace": "kube-system"},
		"data": map[string]string{
			"token-id": enc(id), "token-secret": enc(secret),
			"usage-bootstrap-authentication": enc("true"), "usage-bootstrap-signing": enc("true"),
			"auth-extra-groups": enc("system:bootstrappers:kubeadm:default-node-token"),
		},
	}, http.StatusCreated)
}

// nodeprov runs the binary inside the namespace, where the API server is.
func (c *kubeCluster) nodeprov(t *testing.T, args ...string) result {
	t.Helper()
	return c.nodeprovIn(t, nil, args...)
}

// nodeprovIn runs the binary inside the namespace behind prefix (another
// command that execs it, such as unshare).
func (c *kubeCluster) nodeprovIn(t *testing.T, prefix []string, args ...string) result {
	t.Helper()
	cmd := nodeprovCommand(nil, args...)
	argv := append([]string{"--net=" + c.ns.path(), "--"}, prefix...)
	cmd.Args = append(append(append([]string{"nsenter"}, argv...), nodeprov), args...)
	cmd.Path = mustLookPath(t, "nsenter")
	r, err := runCaptured(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustLookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func writeFileT(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
