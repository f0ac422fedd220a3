package fetch

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// guardDialer maps fake host names to loopback listeners and fails the
// test when anything else (above all the metadata address) is dialled.
type guardDialer struct {
	t     testing.TB
	hosts map[string]string // "name:port" -> "127.0.0.1:port"

	mu     sync.Mutex
	dialed []string
}

func (g *guardDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	g.mu.Lock()
	g.dialed = append(g.dialed, addr)
	g.mu.Unlock()
	if strings.HasPrefix(addr, "169.254.") || strings.Contains(addr, "fe80:") {
		g.t.Errorf("dialled link-local %s", addr)
		return nil, errors.New("test: link-local dial")
	}
	if to, ok := g.hosts[addr]; ok {
		addr = to
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		g.t.Errorf("dial of non-loopback %s", addr)
		return nil, errors.New("test: non-loopback dial")
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func portOf(t testing.TB, s *httptest.Server) string {
	t.Helper()
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

func newTLSServer(t testing.TB, h http.Handler) (*httptest.Server, *countingHandler) {
	t.Helper()
	c := &countingHandler{t: t, next: h, counts: map[string]int{}}
	s := httptest.NewTLSServer(c)
	t.Cleanup(s.Close)
	return s, c
}

func TestRedirectPolicy(t *testing.T) {
	body := payload(5000)
	d := sha256Of(body)

	// The CDN: a second TLS server reached under another host name.
	cdn, cdnHits := newTLSServer(t, filesHandler(map[string][]byte{"/release/runc.amd64": body}))
	// Host names and what the test resolver says they are: the CDN is a
	// public host (as GitHub's release CDN is), so is evil, the mirror is
	// an internal one. The guard dialer still connects every name to
	// loopback; the policy judges the resolved addresses.
	cdnHost := "objects.example.com:" + portOf(t, cdn)
	mirrorHost := "mirror.example.com:" + portOf(t, cdn)
	evilHost := "evil.example.com:" + portOf(t, cdn)
	resolved := map[string][]netip.Addr{
		"objects.example.com":  {netip.MustParseAddr("185.199.108.133")},
		"releases.example.com": {netip.MustParseAddr("140.82.112.3")},
		"mirror.example.com":   {netip.MustParseAddr("10.20.30.40"), netip.MustParseAddr("fd00::1")},
		"evil.example.com":     {netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("203.0.113.5")},
	}
	lookup := func(_ context.Context, host string) ([]netip.Addr, error) {
		if a, ok := resolved[host]; ok {
			return a, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	plain, plainHits := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metadata": // http -> http, link-local
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusMovedPermanently)
			return
		case "/public": // loopback -> a public address, plain http
			http.Redirect(w, r, "http://192.0.2.1/x", http.StatusFound)
			return
		}
		w.Write(body)
	}))

	var loopTarget string
	origin, _ := newTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/cross-host":
			http.Redirect(w, r, "https://"+cdnHost+"/release/runc.amd64", http.StatusFound)
		case "/to-mirror":
			http.Redirect(w, r, "https://"+mirrorHost+"/release/runc.amd64", http.StatusFound)
		case "/to-public-ip":
			http.Redirect(w, r, "https://192.0.2.1/release/runc.amd64", http.StatusFound)
		case "/to-public-name":
			http.Redirect(w, r, "https://"+evilHost+"/release/runc.amd64", http.StatusFound)
		case "/to-unresolvable":
			http.Redirect(w, r, "https://nowhere.example.com/x", http.StatusFound)
		case "/downgrade":
			http.Redirect(w, r, plain.URL+"/runc.amd64", http.StatusFound)
		case "/metadata":
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/iam/security-credentials/", http.StatusFound)
		case "/metadata-v6":
			http.Redirect(w, r, "https://[fe80::a9fe:a9fe]/latest", http.StatusFound)
		case "/metadata-mapped":
			http.Redirect(w, r, "https://[::ffff:169.254.169.254]/latest", http.StatusFound)
		case "/file-scheme":
			http.Redirect(w, r, "file:///etc/shadow", http.StatusFound)
		case "/ftp-scheme":
			http.Redirect(w, r, "ftp://127.0.0.1/x", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, loopTarget, http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	loopTarget = origin.URL + "/loop"

	pool := x509.NewCertPool()
	pool.AddCert(origin.Certificate())
	pool.AddCert(cdn.Certificate())

	tests := []struct {
		path    string
		wantErr string // "" for success
	}{
		// public:/p starts at a public origin (a release host that
		// redirects to its CDN, like github.com).
		{"public:/cross-host", ""},
		{"/to-mirror", ""},
		{"/cross-host", "leads from the private origin https://127.0.0.1:"},
		{"/to-public-ip", "to the public address 192.0.2.1"},
		{"/to-public-name", "to the public address 203.0.113.5"},
		{"/to-unresolvable", "cannot resolve the target"},
		{"plain:/public", "http://192.0.2.1/x leads from the private origin"},
		{"plain:/metadata", "link-local"},
		{"/downgrade", "downgrades https to http"},
		{"/metadata", "link-local"},
		{"/metadata-v6", "link-local"},
		{"/metadata-mapped", "link-local"},
		{"/file-scheme", `scheme "file" is not http(s)`},
		{"/ftp-scheme", `scheme "ftp" is not http(s)`},
		{"/loop", "more than 10 redirects"},
	}
	for _, tt := range tests {
		t.Run(strings.TrimLeft(tt.path, "/"), func(t *testing.T) {
			releasesHost := "releases.example.com:" + portOf(t, origin)
			g := &guardDialer{t: t, hosts: map[string]string{
				cdnHost:      "127.0.0.1:" + portOf(t, cdn),
				mirrorHost:   "127.0.0.1:" + portOf(t, cdn),
				releasesHost: "127.0.0.1:" + portOf(t, origin),
			}}
			f, waits := newTestFetcher(t)
			f.RootCAs = pool
			f.DialContext = g.dial
			f.lookup = lookup
			u := origin.URL + tt.path
			if p, ok := strings.CutPrefix(tt.path, "plain:"); ok {
				u = plain.URL + p
			}
			if p, ok := strings.CutPrefix(tt.path, "public:"); ok {
				u = "https://" + releasesHost + p
			}
			res, err := f.Fetch(context.Background(), []Request{{URL: u, Pinned: &d}})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if res[0].SHA256 != d.Hex {
					t.Fatalf("result %+v", res[0])
				}
				if cdnHits.count("/release/runc.amd64") == 0 {
					t.Fatal("the CDN host was not reached")
				}
				return
			}
			if !errors.Is(err, ErrRedirect) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want ErrRedirect with %q", err, tt.wantErr)
			}
			t.Logf("error: %v", err)
			if len(waits.all()) != 0 {
				t.Fatal("a refused redirect was retried")
			}
			assertNothingKept(t, f.CacheDir)
		})
	}
	if n := plainHits.count("/runc.amd64"); n != 0 {
		t.Fatalf("the http server got %d requests after a refused downgrade", n)
	}
}

// Even a host name that resolves to a link-local address is refused by the
// default dialer.
func TestDialerRefusesLinkLocal(t *testing.T) {
	if err := refuseLinkLocalControl("tcp4", "169.254.169.254:80", nil); err == nil {
		t.Fatal("link-local address accepted")
	}
	if err := refuseLinkLocalControl("tcp6", "[fe80::1%eth0]:443", nil); err == nil {
		t.Fatal("ipv6 link-local address accepted")
	}
	if err := refuseLinkLocalControl("tcp4", "127.0.0.1:80", nil); err != nil {
		t.Fatal(err)
	}
}

// After a redirect from a private origin, the default dialer connects only
// to private addresses: a name that resolved to a private address when the
// redirect was checked and to a public one at dial time (DNS rebinding)
// still cannot lead out.
func TestDialerAfterPrivateOriginRefusesPublic(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:443": true, "10.1.2.3:443": true, "192.168.1.1:80": true, "[fd12::1]:443": true,
		"100.64.0.1:80": true, "0.0.0.0:1": true,
		"192.0.2.1:80": false, "8.8.8.8:443": false, "[2001:db8::1]:443": false, "169.254.169.254:80": false,
	} {
		err := refusePublicControl("tcp", addr, nil)
		if (err == nil) != ok {
			t.Errorf("%s: err = %v, want allowed=%v", addr, err, ok)
		}
	}
	// And the transport really uses it: an attempt marked private-only
	// cannot dial a public literal address.
	hc := newHTTPClient(httpConfig{idleTimeout: time.Second, parallel: 1})
	a := &attempt{}
	a.privateOnly.Store(true)
	req, _ := http.NewRequestWithContext(context.WithValue(context.Background(), attemptKey{}, a), http.MethodGet, "http://192.0.2.1:9/x", nil)
	hc.Transport.(*verifyingTransport).base.(*http.Transport).Proxy = nil
	if _, err := hc.Do(req); err == nil || !errors.Is(err, ErrRedirect) {
		t.Fatalf("dial of a public address after a private origin: err = %v, want ErrRedirect", err)
	}
}

func TestProxyFromEnvironment(t *testing.T) {
	body := payload(3000)
	d := sha256Of(body)

	// A forward proxy on loopback that records what it is asked and serves
	// the answer itself (no onward connection).
	var mu sync.Mutex
	var proxied []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		proxied = append(proxied, r.URL.String())
		mu.Unlock()
		if r.URL.Host != "artifacts.example.test" {
			http.Error(w, "unexpected proxy target", http.StatusBadGateway)
			return
		}
		w.Write(body)
	}))
	t.Cleanup(proxy.Close)
	// Different bytes for the direct request: with the same ones, whichever
	// finished first would put them in the cache and the other request
	// would be a cache hit that never reaches its server.
	directBody := payload(3001)
	direct, directHits := newServer(t, filesHandler(map[string][]byte{"/b": directBody}))
	directHost := "direct.test:" + portOf(t, direct)

	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "REQUEST_METHOD"} {
		t.Setenv(k, "")
	}
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("NO_PROXY", "direct.test,.internal")

	g := &guardDialer{t: t, hosts: map[string]string{directHost: "127.0.0.1:" + portOf(t, direct)}}
	f := &Fetcher{CacheDir: t.TempDir(), DialContext: g.dial} // Proxy nil: environment
	_, err := f.Fetch(context.Background(), []Request{
		{URL: "http://artifacts.example.test/a", Pinned: &d},
		{URL: "http://" + directHost + "/b", Pinned: pin(sha512Of(directBody))},
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(proxied) != 1 || proxied[0] != "http://artifacts.example.test/a" {
		t.Fatalf("proxy saw %v, want only the non-NO_PROXY request", proxied)
	}
	if directHits.count("/b") != 1 {
		t.Fatalf("NO_PROXY host got %d direct requests, want 1", directHits.count("/b"))
	}
	for _, a := range g.dialed {
		if strings.HasPrefix(a, "artifacts.example.test") {
			t.Fatalf("dialled %s directly instead of through the proxy", a)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"5", 5 * time.Second},
		{" 12 ", 12 * time.Second},
		{"-3", 0},
		{"999999999999", time.Minute},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{now.Add(-30 * time.Second).Format(http.TimeFormat), 0},
		{now.Add(time.Hour).Format(http.TimeFormat), time.Minute},
		{"soon", 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now, time.Minute); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	for try := range 20 {
		step := min(backoffBase<<min(try, 16), backoffMax)
		for range 50 {
			d := backoff(try, 0)
			if d < step/2 || d > step {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", try, d, step/2, step)
			}
		}
	}
	if d := backoff(0, 9*time.Second); d != 9*time.Second {
		t.Fatalf("Retry-After not honoured: %v", d)
	}
}
