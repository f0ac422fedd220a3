package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client sends GET requests to one API server with one identity.
type Client struct {
	cfg  *Config
	http *http.Client
}

// NewClient builds a client from a loaded kubeconfig: its CA (or the
// system's), its client certificate and its bearer token.
func NewClient(cfg *Config) (*Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.TLSServerName, InsecureSkipVerify: cfg.InsecureSkipVerify}
	if cfg.CA != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.CA) {
			return nil, fmt.Errorf("%s: cluster %q: certificate-authority holds no PEM certificate", cfg.File, cfg.Cluster)
		}
		tc.RootCAs = pool
	}
	if cfg.ClientCert != nil {
		// The error of X509KeyPair names what is wrong, never the key.
		pair, err := tls.X509KeyPair(cfg.ClientCert, cfg.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("%s: user %q: client-certificate and client-key: %v", cfg.File, cfg.User, err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	proxy := http.ProxyFromEnvironment
	if cfg.ProxyURL != nil {
		proxy = http.ProxyURL(cfg.ProxyURL)
	}
	tr := &http.Transport{
		Proxy:                 proxy,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       30 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	// An API server never redirects a GET of a resource: following one
	// would carry the token to another host.
	hc := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &Client{cfg: cfg, http: hc}, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Config returns the kubeconfig the client was built from.
func (c *Client) Config() *Config { return c.cfg }

// APIError is an HTTP error status from the API server, with the message
// of the Status object it sent.
type APIError struct {
	// URL is the request's URL (it carries no credential).
	URL  string
	Code int
	// Reason and Message come from the server's Status object, when it
	// sent one.
	Reason, Message string
	// Hint says what to do about it, when nodeprov knows.
	Hint string
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("GET %s: %d %s", e.URL, e.Code, http.StatusText(e.Code))
	// A 401's Status says only "Unauthorized": no need to say it twice.
	if e.Message != "" && e.Message != http.StatusText(e.Code) {
		msg += ": " + e.Message
	}
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

// UnreachableError is a request that got no HTTP answer: refused, timed
// out, or a TLS handshake that failed.
type UnreachableError struct {
	URL string
	Err error
	// Hint says what to check, when nodeprov knows.
	Hint string
}

func (e *UnreachableError) Error() string {
	msg := fmt.Sprintf("cannot reach the Kubernetes API at %s: %v", e.URL, e.Err)
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// get sends GET apiPath?query and decodes a 200 answer's JSON into v.
func (c *Client) get(ctx context.Context, apiPath string, query url.Values, v any) error {
	u := *c.cfg.Server
	u.Path = strings.TrimSuffix(u.Path, "/") + apiPath
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "nodeprov")
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.unreachable(u.String(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c.apiError(u.String(), resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: decode the answer: %w", u.String(), err)
	}
	return nil
}

// unreachable wraps a transport error with what to check.
func (c *Client) unreachable(u string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the URL is said once, by UnreachableError
	}
	e := &UnreachableError{URL: u, Err: err}
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	switch {
	case errors.As(err, &unknown) && c.cfg.CA != nil:
		e.Hint = fmt.Sprintf("the server's certificate is not signed by the certificate-authority of cluster %q in %s", c.cfg.Cluster, c.cfg.File)
	case errors.As(err, &unknown):
		e.Hint = fmt.Sprintf("cluster %q in %s has no certificate-authority, and the system's CAs do not trust the server", c.cfg.Cluster, c.cfg.File)
	case errors.As(err, &hostname):
		e.Hint = fmt.Sprintf("the server's certificate does not name the host of cluster %q's server (tls-server-name sets the name to check)", c.cfg.Cluster)
	case ctxDone(err):
		e.Hint = "no answer in time"
	}
	return e
}

func ctxDone(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// apiError reads the Status object of an error answer.
func (c *Client) apiError(u string, resp *http.Response) error {
	e := &APIError{URL: u, Code: resp.StatusCode}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var status struct {
		Kind    string `json:"kind"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &status) == nil && status.Kind == "Status" {
		e.Reason, e.Message = status.Reason, status.Message
	}
	if e.Code == http.StatusUnauthorized {
		e.Hint = fmt.Sprintf("the API server did not accept the %s of user %q in %s (expired, revoked, or from another cluster)", c.cfg.Credential(), c.cfg.User, c.cfg.File)
	}
	return e
}
