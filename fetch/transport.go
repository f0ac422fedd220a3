package fetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// maxRedirects is the redirect hop limit.
const maxRedirects = 10

// attemptKey is the context key of the per-attempt state.
type attemptKey struct{}

// attempt is the state of one download attempt, shared between the fetcher
// (which creates it and passes it in the context given to go-getter) and the
// RoundTripper (which fills it in). It is the source of truth for what
// happened on the wire: go-getter reduces failures to strings such as
// "bad response code: 503", or to ctx.Err() after an idle timeout.
type attempt struct {
	maxSize     int64
	idleTimeout time.Duration
	wantSHA512  bool
	cancel      context.CancelCauseFunc
	progress    Progress // nil: no progress
	name        string   // for progress

	mu          sync.Mutex
	status      int    // final HTTP status
	retryAfter  string // Retry-After of a non-2xx response
	finalURL    string // URL after redirects
	wrapped     bool   // a body was wrapped
	contentLen  int64
	n           int64
	complete    bool  // EOF seen with all bytes
	err         error // first body/transport error, classified
	result      sums
	tracker     Tracker
	idleFired   atomic.Bool
	redirectErr error
	// inspector receives the body's bytes as they are read (Request.Inspect).
	inspector *inspector
	// privateOnly is set once a redirect chain starts at a private
	// origin: from then on the dialer refuses public addresses, so a
	// name that resolves differently at dial time than when the redirect
	// was checked cannot lead out either.
	privateOnly atomic.Bool
}

func attemptFrom(ctx context.Context) *attempt {
	a, _ := ctx.Value(attemptKey{}).(*attempt)
	return a
}

func (a *attempt) setErr(err error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err == nil {
		a.err = err
	}
	return a.err
}

// finish reports the end of the attempt to the progress tracker, if any.
func (a *attempt) finish(err error) {
	a.mu.Lock()
	t := a.tracker
	a.tracker = nil
	a.mu.Unlock()
	if t != nil {
		t.Done(err)
	}
}

// failure returns the recorded error, if any.
func (a *attempt) failure() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.idleFired.Load() && a.err == nil {
		a.err = fmt.Errorf("%w: no data for %s after %d bytes", ErrIdleTimeout, a.idleTimeout, a.n)
	}
	if a.redirectErr != nil && a.err == nil {
		a.err = a.redirectErr
	}
	return a.err
}

// verifyingTransport wraps the base transport: it accepts only GET, records
// the response status for the retry logic, refuses bodies whose declared
// length exceeds the cap, and wraps 200 bodies in a meteredBody.
type verifyingTransport struct {
	base http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *verifyingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	a := attemptFrom(req.Context())
	if a != nil && req.Method != http.MethodGet {
		// A download is a GET: go-getter's HEAD probe is disabled
		// (DoNotCheckHeadFirst); make sure nothing else slips through.
		// Outside downloads, registries get their HEADs and token POSTs
		// (and `nodeprov mirror` its pushes).
		return nil, fmt.Errorf("fetch: refusing %s request", req.Method)
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil || a == nil {
		return resp, err
	}
	a.mu.Lock()
	a.status = resp.StatusCode
	a.finalURL = req.URL.String()
	a.mu.Unlock()
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return resp, nil // the client applies CheckRedirect
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		// 206 and friends: we never send Range, so anything but 200 is wrong.
		resp.Body.Close()
		return nil, a.setErr(fmt.Errorf("unexpected http status %d", resp.StatusCode))
	default:
		a.mu.Lock()
		a.retryAfter = resp.Header.Get("Retry-After")
		a.mu.Unlock()
		return resp, nil
	}
	if resp.ContentLength > a.maxSize {
		resp.Body.Close()
		return nil, a.setErr(fmt.Errorf("%w: Content-Length %d is above the %d byte cap", ErrTooLarge, resp.ContentLength, a.maxSize))
	}
	resp.Body = newMeteredBody(a, resp.Body, resp.ContentLength)
	return resp, nil
}

// meteredBody hashes, counts, caps and watches a response body.
type meteredBody struct {
	a       *attempt
	rc      io.ReadCloser
	h       *hasher
	timer   *time.Timer
	tracker Tracker
	done    bool
}

func newMeteredBody(a *attempt, rc io.ReadCloser, contentLen int64) *meteredBody {
	a.mu.Lock()
	a.wrapped = true
	a.contentLen = contentLen
	a.n = 0
	a.mu.Unlock()
	b := &meteredBody{a: a, rc: rc, h: newHasher(a.wantSHA512)}
	if a.idleTimeout > 0 {
		b.timer = time.AfterFunc(a.idleTimeout, func() {
			a.idleFired.Store(true)
			if a.cancel != nil {
				a.cancel(ErrIdleTimeout)
			}
		})
	}
	if a.progress != nil {
		t := a.progress.Start(a.name, contentLen)
		a.mu.Lock()
		a.tracker = t
		a.mu.Unlock()
		b.tracker = t
	}
	return b
}

// Read implements io.Reader.
func (b *meteredBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	a := b.a
	n, err := b.rc.Read(p)
	if n > 0 {
		if b.timer != nil {
			b.timer.Reset(a.idleTimeout)
		}
		a.mu.Lock()
		a.n += int64(n)
		total := a.n
		a.mu.Unlock()
		if total > a.maxSize {
			b.stop()
			return 0, a.setErr(fmt.Errorf("%w: more than %d bytes", ErrTooLarge, a.maxSize))
		}
		b.h.Write(p[:n])
		if a.inspector != nil {
			a.inspector.feed(p[:n])
		}
		if b.tracker != nil {
			b.tracker.Advance(int64(n))
		}
	}
	if err == nil {
		return n, nil
	}
	b.stop()
	a.mu.Lock()
	total, cl := a.n, a.contentLen
	a.mu.Unlock()
	if err == io.EOF {
		if cl >= 0 && total < cl {
			return n, a.setErr(fmt.Errorf("%w: body ended after %d of %d bytes", ErrTruncated, total, cl))
		}
		a.mu.Lock()
		a.complete = true
		a.result = b.h.sums()
		a.mu.Unlock()
		b.done = true
		return n, io.EOF
	}
	if a.idleFired.Load() {
		return n, a.setErr(fmt.Errorf("%w: no data for %s after %d bytes", ErrIdleTimeout, a.idleTimeout, total))
	}
	if cl >= 0 && errors.Is(err, io.ErrUnexpectedEOF) {
		return n, a.setErr(fmt.Errorf("%w: connection closed after %d of %d bytes: %w", ErrTruncated, total, cl, err))
	}
	return n, a.setErr(fmt.Errorf("connection lost after %d bytes: %w", total, err))
}

func (b *meteredBody) stop() {
	if b.timer != nil {
		b.timer.Stop()
	}
}

// Close implements io.Closer.
func (b *meteredBody) Close() error {
	b.stop()
	return b.rc.Close()
}

// httpConfig is what newHTTPClient needs from a Fetcher.
type httpConfig struct {
	proxy       func(*http.Request) (*url.URL, error)
	rootCAs     *x509.CertPool
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	lookup      lookupFunc // nil: the system resolver
	idleTimeout time.Duration
	parallel    int
}

// newHTTPClient builds the client handed to go-getter's HttpGetter.
func newHTTPClient(c httpConfig) *http.Client {
	proxy := c.proxy
	if proxy == nil {
		// Evaluated per Fetcher: http.ProxyFromEnvironment caches the
		// environment for the life of the process.
		pf := httpproxy.FromEnvironment().ProxyFunc()
		proxy = func(r *http.Request) (*url.URL, error) { return pf(r.URL) }
	}
	dial := c.dial
	if dial == nil {
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := &net.Dialer{
				Timeout:   c.idleTimeout,
				KeepAlive: 30 * time.Second,
				Control:   refuseLinkLocalControl,
			}
			if a := attemptFrom(ctx); a != nil && a.privateOnly.Load() {
				d.Control = refusePublicControl
			}
			return d.DialContext(ctx, network, addr)
		}
	} else {
		inner := dial
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if err := refuseLinkLocalAddr(addr); err != nil {
				return nil, err
			}
			return inner(ctx, network, addr)
		}
	}
	lookup := c.lookup
	if lookup == nil {
		lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	base := &http.Transport{
		Proxy:                 proxy,
		DialContext:           dial,
		TLSClientConfig:       &tls.Config{RootCAs: c.rootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   c.idleTimeout,
		ResponseHeaderTimeout: c.idleTimeout,
		ExpectContinueTimeout: time.Second,
		// Bytes must be exactly what the server sent: the digest decides.
		// (A .tar.gz served with Content-Encoding: gzip must not be
		// inflated behind our back.)
		DisableCompression:  true,
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        2 * c.parallel,
		MaxIdleConnsPerHost: c.parallel,
		IdleConnTimeout:     90 * time.Second,
	}
	return &http.Client{
		Transport: &verifyingTransport{base: base},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			return checkRedirect(lookup, req, via)
		},
		// No Timeout: a whole-download deadline is wrong for large files on
		// slow links; the idle timeout is enforced by meteredBody.
	}
}

// lookupFunc resolves a host name to its addresses.
type lookupFunc func(ctx context.Context, host string) ([]netip.Addr, error)

// checkRedirect is the redirect policy: http(s) only, no https→http
// downgrade anywhere in the chain, no link-local targets, at most
// maxRedirects hops, and never from a private origin to a public address.
// https→https across public hosts is followed (release downloads land on
// a CDN host).
func checkRedirect(lookup lookupFunc, req *http.Request, via []*http.Request) error {
	err := redirectPolicy(req, via)
	if err == nil {
		err = privateOriginPolicy(lookup, req, via)
	}
	if err != nil {
		if a := attemptFrom(req.Context()); a != nil {
			a.mu.Lock()
			if a.redirectErr == nil {
				a.redirectErr = err
			}
			a.mu.Unlock()
		}
	}
	return err
}

func redirectPolicy(req *http.Request, via []*http.Request) error {
	from := "?"
	if len(via) > 0 {
		from = via[len(via)-1].URL.Redacted()
	}
	to := req.URL.Redacted()
	if len(via) >= maxRedirects {
		return fmt.Errorf("%w: more than %d redirects (last %s -> %s)", ErrRedirect, maxRedirects, from, to)
	}
	if isLinkLocalHost(req.URL.Hostname()) {
		return fmt.Errorf("%w: %s -> %s targets a link-local address", ErrRedirect, from, to)
	}
	switch req.URL.Scheme {
	case "https":
	case "http":
		for _, v := range via {
			if v.URL.Scheme == "https" {
				return fmt.Errorf("%w: %s -> %s downgrades https to http", ErrRedirect, from, to)
			}
		}
	default:
		return fmt.Errorf("%w: %s -> %s: scheme %q is not http(s)", ErrRedirect, from, to, req.URL.Scheme)
	}
	return nil
}

// privateOriginPolicy refuses a redirect that leads from a private origin
// (loopback, RFC 1918, ULA, link-local: an internal mirror, a test server)
// to a public address, where an internal request has no business going.
// Both ends are judged after DNS resolution; a chain in which any hop was
// private counts as private. A proxy does not change the verdict: the
// target is resolved here, before the request is handed to the proxy, and
// direct connections are held to it again at dial time (privateOnly).
func privateOriginPolicy(lookup lookupFunc, req *http.Request, via []*http.Request) error {
	if len(via) == 0 {
		return nil
	}
	ctx := req.Context()
	var origin string
	for _, v := range via {
		addrs, err := hostAddrs(ctx, lookup, v.URL.Hostname())
		if err != nil {
			continue // it was reached, so the resolution failing now is transient
		}
		if i := slices.IndexFunc(addrs, isPrivateAddr); i >= 0 {
			origin = v.URL.Redacted() + " (" + addrs[i].String() + ")"
			break
		}
	}
	if origin == "" {
		return nil
	}
	if a := attemptFrom(ctx); a != nil {
		a.privateOnly.Store(true)
	}
	to := req.URL.Redacted()
	addrs, err := hostAddrs(ctx, lookup, req.URL.Hostname())
	if err != nil {
		return fmt.Errorf("%w: %s -> %s: cannot resolve the target to check that it stays private: %v", ErrRedirect, via[len(via)-1].URL.Redacted(), to, err)
	}
	for _, ip := range addrs {
		if !isPrivateAddr(ip) {
			return fmt.Errorf("%w: %s -> %s leads from the private origin %s to the public address %s", ErrRedirect, via[len(via)-1].URL.Redacted(), to, origin, ip)
		}
	}
	return nil
}

// hostAddrs returns a literal IP as is and resolves a name.
func hostAddrs(ctx context.Context, lookup lookupFunc, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip.Unmap()}, nil
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return []netip.Addr{netip.IPv6Loopback(), netip.AddrFrom4([4]byte{127, 0, 0, 1})}, nil
	}
	addrs, err := lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%s has no addresses", host)
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	return addrs, nil
}

// sharedSpace is RFC 6598 carrier-grade NAT space: not routable on the
// internet, so not public.
var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

// isPrivateAddr reports whether ip is not a public internet address:
// loopback, RFC 1918 or ULA (fc00::/7), link-local, unspecified, or shared
// address space.
func isPrivateAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || sharedSpace.Contains(ip)
}

// refusePublicControl is the dialer's Control for an attempt whose redirect
// chain started at a private origin.
func refusePublicControl(network, address string, c syscall.RawConn) error {
	if err := refuseLinkLocalControl(network, address, c); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		host = address
	}
	if ip, err := netip.ParseAddr(host); err == nil && !isPrivateAddr(ip) {
		return fmt.Errorf("%w: refusing to connect to the public address %s after a redirect from a private origin", ErrRedirect, address)
	}
	return nil
}

// isLinkLocalHost reports whether host is a literal link-local IP
// (169.254.0.0/16, fe80::/10, also IPv4-mapped).
func isLinkLocalHost(host string) bool {
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	return ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast()
}

func refuseLinkLocalAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if isLinkLocalHost(host) {
		return fmt.Errorf("fetch: refusing to connect to link-local address %s", addr)
	}
	return nil
}

// refuseLinkLocalControl stops the default dialer from connecting to a
// link-local address even when a host name resolved to one.
func refuseLinkLocalControl(network, address string, _ syscall.RawConn) error {
	return refuseLinkLocalAddr(address)
}
