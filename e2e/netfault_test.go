package e2e

import (
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// This file runs network faults through the real binary, all on loopback:
// resets, stalls, slow bodies, 5xx storms, 429 with Retry-After, lying
// Content-Length, Content-Encoding, TLS trust and host names, and the
// redirect policy. Every run has HTTP_PROXY and HTTPS_PROXY pointing at a
// loopback proxy that records and refuses anything not aimed at loopback,
// so a request that escapes the redirect policy is caught there and never
// leaves the machine; each case asserts what the proxy saw.

// netIdle is the --idle-timeout of every run: short, so that stalls fail in
// seconds, and far above the gaps of the slow-drip body.
const netIdle = 500 * time.Millisecond

// ---- loopback proxy -------------------------------------------------------

// guardProxy is an HTTP proxy on loopback that tunnels (CONNECT) and
// forwards (absolute-form requests) only to loopback targets, and refuses
// and records everything else.
type guardProxy struct {
	*httptest.Server
	mu  sync.Mutex
	log []string
}

func newGuardProxy(t *testing.T) *guardProxy {
	t.Helper()
	p := &guardProxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.Close)
	return p
}

func (p *guardProxy) record(s string) {
	p.mu.Lock()
	p.log = append(p.log, s)
	p.mu.Unlock()
}

func (p *guardProxy) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.log...)
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.Unmap().IsLoopback()
}

func (p *guardProxy) serve(w http.ResponseWriter, r *http.Request) {
	target := r.Host
	if r.Method != http.MethodConnect {
		target = r.URL.Host
	}
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		host = target
	}
	if !isLoopbackHost(host) {
		p.record(fmt.Sprintf("refused %s %s", r.Method, target))
		http.Error(w, "e2e proxy: refusing non-loopback target "+target, http.StatusForbidden)
		return
	}
	p.record(fmt.Sprintf("passed %s %s", r.Method, target))
	if r.Method != http.MethodConnect {
		resp, err := (&http.Transport{}).RoundTrip(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
		return
	}
	upstream, err := net.Dial("tcp", target)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	conn, rw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		upstream.Close()
		return
	}
	rw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
	rw.Flush()
	go func() { io.Copy(upstream, rw); upstream.Close() }()
	io.Copy(conn, upstream)
	conn.Close()
}

// ---- TLS material ---------------------------------------------------------

// testPKI is a CA and leaf certificates for loopback servers.
type testPKI struct {
	caFile string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "nodeprov e2e CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &testPKI{caFile: file, ca: ca, caKey: key}
}

// leaf issues a server certificate for the given names and addresses.
func (p *testPKI) leaf(t *testing.T, dnsNames []string, ips ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "nodeprov e2e server"},
		DNSNames:     dnsNames,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// ---- servers --------------------------------------------------------------

// faultServer counts requests per path and hands each to a handler that
// knows which attempt it is (1-based).
type faultServer struct {
	*httptest.Server
	mu    sync.Mutex
	count map[string]int
	times []time.Time
	hdrs  []http.Header
}

// startFault starts a fault server on addr (host:0) with plain HTTP, or
// TLS with cert when it is non-nil.
func startFault(t *testing.T, addr string, cert *tls.Certificate, h func(w http.ResponseWriter, r *http.Request, n int)) *faultServer {
	t.Helper()
	s := &faultServer{count: map[string]int{}}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s.Server = &httptest.Server{Listener: ln, Config: &http.Server{ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.count[r.URL.Path]++
		n := s.count[r.URL.Path]
		s.times = append(s.times, time.Now())
		s.hdrs = append(s.hdrs, r.Header.Clone())
		s.mu.Unlock()
		h(w, r, n)
	})}}
	if cert != nil {
		s.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(func() {
		s.CloseClientConnections()
		s.Close()
	})
	return s
}

func (s *faultServer) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.count {
		n += c
	}
	return n
}

// serveAll writes data with its Content-Length.
func serveAll(w http.ResponseWriter, data []byte) {
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	w.Write(data)
}

// rawResponse hijacks the connection and writes a response by hand: a
// Content-Length header of declared and then body; it then closes the
// connection, with a reset (RST) when reset is set.
func rawResponse(w http.ResponseWriter, declared int, body []byte, reset bool) {
	conn, rw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	fmt.Fprintf(rw, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", declared)
	rw.Write(body)
	rw.Flush()
	if reset {
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
	} else {
		time.Sleep(50 * time.Millisecond)
	}
	conn.Close()
}

// stall writes headers and a first part of the body, then sends nothing
// until the client gives up.
func stall(w http.ResponseWriter, r *http.Request, data []byte) {
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	w.Write(data[:1024])
	w.(http.Flusher).Flush()
	<-r.Context().Done()
}

// ---- the cases ------------------------------------------------------------

// netRun is the environment of one case: the proxy, the test CA (given to
// nodeprov in the spec's tls.ca when trustCA, or as tls.caFile inside the
// root when caInRoot) and a fresh root; and the nodeprov run, started in
// the background.
type netRun struct {
	proxy    *guardProxy
	pki      *testPKI
	root     string
	sem      chan struct{}
	caInRoot bool

	done chan struct{}
	res  result
	took time.Duration
	err  error
}

// start runs nodeprov in the background on a spec downloading url (pinned
// to sha) to /usr/local/bin/tool, or, with extract, as an archive tree into
// /opt/cni/bin. The cases mostly wait (retries, backoff, idle timeouts), so
// they run side by side whatever go test's -parallel is.
func (n *netRun) start(t *testing.T, url, sha, extract string, trustCA bool) {
	t.Helper()
	install := "path: /usr/local/bin/tool\n    mode: \"0755\""
	if extract != "" {
		install = "extract: " + extract
	}
	tls := ""
	if trustCA {
		ca, err := os.ReadFile(n.pki.caFile)
		if err != nil {
			t.Fatal(err)
		}
		if n.caInRoot {
			dst := filepath.Join(n.root, "etc/nodeprov/ca.pem")
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, ca, 0o644); err != nil {
				t.Fatal(err)
			}
			tls = "tls: {caFile: /etc/nodeprov/ca.pem}\n"
		} else {
			tls = "tls:\n  ca: |\n" + indent(string(ca), "    ")
		}
	}
	spec := writeSpec(t, fmt.Sprintf("%s%sdownloads:\n  - url: %q\n    sha256: %s\n    %s\n", hostileSpecHeader, tls, url, sha, install))
	// SSL_CERT_FILE points at an empty bundle: only the spec's CA is trusted.
	env := []string{"HTTP_PROXY=" + n.proxy.URL, "HTTPS_PROXY=" + n.proxy.URL, "NO_PROXY=", "SSL_CERT_FILE=/dev/null", "SSL_CERT_DIR=/nonexistent"}
	n.done = make(chan struct{})
	go func() {
		defer close(n.done)
		n.sem <- struct{}{}
		defer func() { <-n.sem }()
		start := time.Now()
		n.res, n.err = execNodeprov(env, "", "apply", "--root", n.root, "--stages", "fetch,install", "--idle-timeout", netIdle.String(), spec)
		n.took = time.Since(start)
	}()
	// Before the servers and the root go away.
	t.Cleanup(func() { <-n.done })
}

// installedAfter checks that the run installed data after exactly want
// requests to s, and that the proxy saw what it should.
func (n *netRun) installedAfter(t *testing.T, s *faultServer, data []byte, want int) {
	t.Helper()
	r, _ := n.wait(t)
	n.installed(t, r, data)
	if s.requests() != want {
		t.Errorf("%d requests, want %d", s.requests(), want)
	}
	n.proxySaw(t)
}

// wait returns the finished run and how long it took.
func (n *netRun) wait(t *testing.T) (result, time.Duration) {
	t.Helper()
	<-n.done
	if n.err != nil {
		t.Fatal(n.err)
	}
	return n.res, n.took
}

// installed fails unless the tool holds want.
func (n *netRun) installed(t *testing.T, r result, want []byte) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("apply failed:\n%s", shortenText(r.output(), 4000))
	}
	got, err := os.ReadFile(filepath.Join(n.root, "usr/local/bin/tool"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("installed tool: %d bytes, %v; want the %d pinned bytes", len(got), err, len(want))
	}
}

// refused fails unless the run failed with a message holding every part of
// want, installed nothing and left no staging file or cache entry.
func (n *netRun) refused(t *testing.T, r result, want ...string) string {
	t.Helper()
	wantRefused(t, r, 1, want...)
	if _, err := os.Lstat(filepath.Join(n.root, "usr/local/bin/tool")); err == nil {
		t.Errorf("a refused download was installed")
	}
	for _, d := range []string{"tmp", "sha256", "sha512"} {
		if es, _ := os.ReadDir(filepath.Join(n.root, "var/cache/nodeprov", d)); len(es) > 0 {
			t.Errorf("cache %s/ not empty after a refused download: %d entries", d, len(es))
		}
	}
	return "refused (exit 1): " + r.headline()
}

// proxySaw fails unless the proxy log is exactly want.
func (n *netRun) proxySaw(t *testing.T, want ...string) {
	t.Helper()
	got := n.proxy.seen()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the proxy saw %q, want %q", got, want)
	}
}

// TestNetworkFaults runs every network fault through the binary and prints
// the table.
func TestNetworkFaults(t *testing.T) {
	requireRoot(t)
	host := hostStateSnapshot(t)
	t.Cleanup(func() { checkHostStateUnchanged(t, host) })
	table := newOutcomeTable(t, "network faults")
	pki := newTestPKI(t)
	good := pki.leaf(t, []string{"localhost"}, "127.0.0.1", "127.0.0.2", "127.0.0.3")
	wrongHost := pki.leaf(t, []string{"cdn.example.invalid"}, "127.0.0.2")

	data := make([]byte, 128<<10)
	rand.Read(data)
	sha := sha256hex(data)
	tgz := makeTarGz(t, tFile("bridge", 0o755, string(data[:4096])))

	// Each case sets up its servers and starts its run here; the checks run
	// as subtests once every case has started.
	type pending struct {
		name  string
		check func(*testing.T) string
	}
	var cases []pending
	sem := make(chan struct{}, 10)
	run := func(name string, setup func(t *testing.T, n *netRun) func(*testing.T) string) {
		n := &netRun{proxy: newGuardProxy(t), pki: pki, root: newCanarySandbox(t).root, sem: sem}
		cases = append(cases, pending{name, setup(t, n)})
	}

	run("reset mid-body, then success", func(t *testing.T, n *netRun) func(*testing.T) string {
		s := startFault(t, "127.0.0.1:0", nil, func(w http.ResponseWriter, r *http.Request, k int) {
			if k == 1 {
				rawResponse(w, len(data), data[:len(data)/2], true)
				return
			}
			serveAll(w, data)
		})
		n.start(t, s.URL+"/tool", sha, "", false)
		return func(t *testing.T) string {
			r, _ := n.wait(t)
			n.installed(t, r, data)
			if s.requests() != 2 {
				t.Errorf("%d requests, want 2 (reset, retry)", s.requests())
			}
			n.proxySaw(t)
			return fmt.Sprintf("installed after %d requests (reset after %d of %d bytes, retried)", s.requests(), len(data)/2, len(data))
		}
	})

	run("stall after headers (every attempt)", func(t *testing.T, n *netRun) func(*testing.T) string {
		s := startFault(t, "127.0.0.1:0", nil, func(w http.ResponseWriter, r *http.Request, _ int) { stall(w, r, data) })
		n.start(t, s.URL+"/tool", sha, "", false)
		return func(t *testing.T) string {
			r, _ := n.wait(t)
			out := n.refused(t, r, s.URL+"/tool", "idle timeout", "no data for "+netIdle.String(), "after 5 attempts")
			if s.requests() != 5 {
				t.Errorf("%d requests, want 5 (4 retries)", s.requests())
			}
			n.proxySaw(t)
			return out
		}
	})

	run("stall before headers (every attempt)", func(t *testing.T, n *netRun) func(*testing.T) string {
		s := startFault(t, "127.0.0.1:0", nil, func(w http.ResponseWriter, r *http.Request, _ int) { <-r.Context().Done() })
		n.start(t, s.URL+"/tool", sha, "", false)
		return func(t *testing.T) string {
			r, _ := n.wait(t)
			out := n.refused(t, r, s.URL+"/tool", "timeout", "after 5 attempts")
			n.proxySaw(t)
			return out
		}
	})

	run("slow drip (2 KiB every 25 ms, alive)", func(t *testing.T, n *netRun) func(*testing.T) string {
		s := startFault(t, "127.0.0.1:0", nil, func(w http.ResponseWriter, r *http.Request, _ int) {
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
			for off := 0; off < len(data); off += 2048 {
				w.Write(data[off:min(off+2048, len(data))])
				w.(http.Flusher).Flush()
				time.Sleep(25 * time.Millisecond)
			}
		})
		n.start(t, s.URL+"/tool", sha, "", false)
		return func(t *testing.T) string {
			r, took := n.wait(t)
			n.installed(t, r, data)
			if s.requests() != 1 {
				t.Errorf("%d requests, want 1", s.requests())
			}
			if took < 3*netIdle {
				t.Errorf("the slow body took only %v; it must outlast several idle timeouts to show there is no whole-download deadline", took)
			}
			n.proxySaw(t)
			return fmt.Sprintf("installed in one request over %.1fs (idle timeout %v)", took.Seconds(), netIdle)
		}
	})

	run("5xx storm (500, 502, 503), then success", func(t *testing.T, n *netRun) func(*testing.T) string {
		codes := []int{500, 502, 503}
		s := startFault(t, "127.0.0.1:0", nil, func(w http.ResponseWriter, r *http.Request, k int) {
			if k <= len(codes) {
				http.Error(w, "storm", codes[k-1])
				return
			}
			serveAll(w, data)
		})
		n.start(t, s.URL+"/tool", sha, "", false)
		return func(t *testing.T) string {
			n.installedAfter(t, s, data, 4)
			return fmt.Sprintf("installed after %d requests (3 retried 5xx)", s.requests())
		}
	})

	run("5xx storm that never ends", func(t *testing.T, n *netRun) func(*testing.T) string {
		s := startFault(t, "127.0.0.1:0", nil, func(w http.ResponseWriter, r *http.Request, _ int) {
			http.Error(w, "down", http.StatusServiceUnavailable)
		})
		n.start(t, s.URL+"/tool", sha, "", false)
		return func(t *testing.T) string {
			r, _ := n.wait(t)
			out := n.refused(t, r, s.URL+"/tool", "503 Service Unavailable", "after 5 attempts")
			if s.requests() != 5 {
				t.Errorf("%d requests, want 5", s.requests())
			}
			n.proxySaw(t)
			return out
		}
	})

	run("429 with Retry-After: 2", func(t *testing.T, n *netRun) func(*testing.T) string {
		s := startFault(t, "127.0.0.1:0", nil, func(w http.ResponseWriter, r *http.Request, k int) {
			if k == 1 {
				w.Header().Set("Retry-After", "2")
				http.Error(w, "slow down", http.StatusTooManyRequests)
				return
			}
			serveAll(w, data)
		})
		n.start(t, s.URL+"/tool", sha, "", false)
		return func(t *testing.T) string {
			r, _ := n.wait(t)
			n.installed(t, r, data)
			s.mu.Lock()
			times := append([]time.Time(nil), s.times...)
			s.mu.Unlock()
			if len(times) != 2 {
				t.Fatalf("%d requests, want 2", len(times))
			}
			// The first backoff step is at most 500ms: only Retry-After makes
			// the wait 2s or more.
			gap := times[1].Sub(times[0])
			if gap < 2*time.Second {
				t.Errorf("retried after %v, before the 2s Retry-After", gap)
			}
			n.proxySaw(t)
			return fmt.Sprintf("installed; retried after %.2fs (Retry-After honoured)", gap.Seconds())
		}
	})

	run("body shorter than Content-Length, then success", func(t *testing.T, n *netRun) func(*testing.T) string {
		s := startFault(t, "127.0.0.1:0", nil, func(w http.ResponseWriter, r *http.Request, k int) {
			if k == 1 {
				rawResponse(w, len(data), data[:len(data)-1000], false)
				return
			}
			serveAll(w, data)
		})
		n.start(t, s.URL+"/tool", sha, "", false)
		return func(t *testing.T) string {
			n.installedAfter(t, s, data, 2)
			return fmt.Sprintf("installed after %d requests (short body detected, retried)", s.requests())
		}
	})

	run("body shorter than Content-Length (every attempt)", func(t *testing.T, n *netRun) func(*testing.T) string {
		s := startFault(t, "127.0.0.1:0", nil, func(w http.ResponseWriter, r *http.Request, _ int) {
			rawResponse(w, len(data), data[:len(data)-1000], false)
		})
		n.start(t, s.URL+"/tool", sha, "", false)
		return func(t *testing.T) string {
			r, _ := n.wait(t)
			out := n.refused(t, r, s.URL+"/tool", "truncated", fmt.Sprintf("of %d bytes", len(data)), "after 5 attempts")
			n.proxySaw(t)
			return out
		}
	})

	run("body longer than Content-Length", func(t *testing.T, n *netRun) func(*testing.T) string {
		s := startFault(t, "127.0.0.1:0", nil, func(w http.ResponseWriter, r *http.Request, _ int) {
			rawResponse(w, len(data), append(append([]byte(nil), data...), bytes.Repeat([]byte("EXTRA\x00\x1b[2J\xff"), 500)...), false)
		})
		n.start(t, s.URL+"/tool", sha, "", false)
		return func(t *testing.T) string {
			r, _ := n.wait(t)
			n.installed(t, r, data)
			// net/http's "Unsolicited response ..." log line, quoting the
			// server's extra bytes, never reaches nodeprov's output.
			if out := r.output(); strings.Contains(out, "Unsolicited") || !printableText(out) {
				t.Errorf("output carries net/http's log line or raw bytes:\n%q", out)
			}
			return "installed exactly Content-Length bytes (the pinned ones); the 5500 extra bytes were dropped, no raw byte in the output"
		}
	})

	run("Content-Length understates the artifact", func(t *testing.T, n *netRun) func(*testing.T) string {
		longer := append(append([]byte(nil), data...), bytes.Repeat([]byte("TAIL"), 1000)...)
		s := startFault(t, "127.0.0.1:0", nil, func(w http.ResponseWriter, r *http.Request, _ int) {
			rawResponse(w, len(data), longer, false)
		})
		n.start(t, s.URL+"/tool", sha256hex(longer), "", false)
		return func(t *testing.T) string {
			r, _ := n.wait(t)
			return n.refused(t, r, s.URL+"/tool", "digest mismatch", "want sha256:"+sha256hex(longer), "got sha256:"+sha)
		}
	})

	run("Content-Encoding: gzip on a .tar.gz", func(t *testing.T, n *netRun) func(*testing.T) string {
		s := startFault(t, "127.0.0.1:0", nil, func(w http.ResponseWriter, r *http.Request, _ int) {
			w.Header().Set("Content-Type", "application/gzip")
			w.Header().Set("Content-Encoding", "gzip")
			serveAll(w, tgz)
		})
		n.start(t, s.URL+"/cni.tgz", sha256hex(tgz), "{to: /opt/cni/bin}", false)
		return func(t *testing.T) string {
			r, _ := n.wait(t)
			if r.code != 0 {
				t.Fatalf("apply failed:\n%s", shortenText(r.output(), 4000))
			}
			cached, err := os.ReadFile(filepath.Join(n.root, "var/cache/nodeprov/sha256", sha256hex(tgz)))
			if err != nil || !bytes.Equal(cached, tgz) {
				t.Errorf("cache holds %d bytes (%v), want the %d bytes of the .tar.gz as sent", len(cached), err, len(tgz))
			}
			if got, _ := os.ReadFile(filepath.Join(n.root, "opt/cni/bin/bridge")); !bytes.Equal(got, data[:4096]) {
				t.Errorf("member not installed from the .tar.gz")
			}
			if ae := s.hdrs[0].Get("Accept-Encoding"); ae != "" {
				t.Errorf("nodeprov sent Accept-Encoding %q", ae)
			}
			return "installed; stored bytes are the pinned .tar.gz (not inflated), no Accept-Encoding sent"
		}
	})

	run("Content-Encoding: gzip over a gzip-wrapped .tar.gz", func(t *testing.T, n *netRun) func(*testing.T) string {
		var wrapped bytes.Buffer
		zw := gzip.NewWriter(&wrapped)
		zw.Write(tgz)
		zw.Close()
		s := startFault(t, "127.0.0.1:0", nil, func(w http.ResponseWriter, r *http.Request, _ int) {
			w.Header().Set("Content-Encoding", "gzip")
			serveAll(w, wrapped.Bytes())
		})
		n.start(t, s.URL+"/cni.tgz", sha256hex(tgz), "{to: /opt/cni/bin}", false)
		return func(t *testing.T) string {
			r, _ := n.wait(t)
			out := n.refused(t, r, s.URL+"/cni.tgz", "digest mismatch", "got sha256:"+sha256hex(wrapped.Bytes()))
			if es, _ := os.ReadDir(filepath.Join(n.root, "opt/cni/bin")); len(es) > 0 {
				t.Errorf("installed from a refused archive")
			}
			return out + " (the unrequested encoding is not decoded)"
		}
	})

	run("TLS: CA not trusted", func(t *testing.T, n *netRun) func(*testing.T) string {
		s := startFault(t, "127.0.0.1:0", &good, func(w http.ResponseWriter, r *http.Request, _ int) { serveAll(w, data) })
		n.start(t, s.URL+"/tool", sha, "", false)
		return func(t *testing.T) string {
			r, took := n.wait(t)
			out := n.refused(t, r, s.URL+"/tool", "certificate signed by unknown authority")
			if strings.Contains(r.output(), "attempts") || took > 3*time.Second {
				t.Errorf("a certificate error was retried (%v)", took)
			}
			if s.requests() != 0 {
				t.Errorf("the server got %d requests over an untrusted connection", s.requests())
			}
			n.proxySaw(t)
			return out
		}
	})

	run("TLS: wrong host name (cert for 127.0.0.2)", func(t *testing.T, n *netRun) func(*testing.T) string {
		s := startFault(t, "127.0.0.1:0", &wrongHost, func(w http.ResponseWriter, r *http.Request, _ int) { serveAll(w, data) })
		n.start(t, s.URL+"/tool", sha, "", true)
		return func(t *testing.T) string {
			r, _ := n.wait(t)
			out := n.refused(t, r, s.URL+"/tool", "certificate is valid for 127.0.0.2, not 127.0.0.1")
			if s.requests() != 0 {
				t.Errorf("the server got %d requests over an unverified connection", s.requests())
			}
			n.proxySaw(t)
			return out
		}
	})

	run("TLS: CA bundle in the spec (tls.caFile in the root)", func(t *testing.T, n *netRun) func(*testing.T) string {
		s := startFault(t, "127.0.0.1:0", &good, func(w http.ResponseWriter, r *http.Request, _ int) { serveAll(w, data) })
		n.caInRoot = true
		n.start(t, s.URL+"/tool", sha, "", true)
		return func(t *testing.T) string {
			r, _ := n.wait(t)
			n.installed(t, r, data)
			n.proxySaw(t)
			return "installed: the test CA from tls.caFile is trusted (every other TLS case passes it inline as tls.ca)"
		}
	})

	// Redirects. The origin is https on 127.0.0.1; the targets serve the
	// pinned bytes, so only the redirect policy can make a run fail.
	redirect := func(to func() string) func(w http.ResponseWriter, r *http.Request, _ int) {
		return func(w http.ResponseWriter, r *http.Request, _ int) { http.Redirect(w, r, to(), http.StatusFound) }
	}

	// First, and alone: prove that nodeprov sends what is not loopback to
	// the proxy. 0.0.0.0 is not loopback to the proxy rules, but dialled
	// directly it is this machine, so the probe stays local either way.
	// Without it, the cases that redirect to other addresses do not run.
	var probe *netRun
	run("proxy in use (redirect to 0.0.0.0:1)", func(t *testing.T, n *netRun) func(*testing.T) string {
		probe = n
		origin := startFault(t, "127.0.0.1:0", nil, redirect(func() string { return "http://0.0.0.0:1/tool" }))
		n.start(t, origin.URL+"/tool", sha, "", false)
		return func(t *testing.T) string {
			r, _ := n.wait(t)
			out := n.refused(t, r, origin.URL+"/tool", "403")
			n.proxySaw(t, "refused GET 0.0.0.0:1")
			return out + " (proxy refused GET http://0.0.0.0:1/tool)"
		}
	})
	<-probe.done
	if got := probe.proxy.seen(); len(got) != 1 || got[0] != "refused GET 0.0.0.0:1" {
		t.Fatalf("nodeprov did not send a non-loopback request to HTTP_PROXY (proxy saw %q): refusing to run cases that could leave loopback\n%s", got, probe.res.output())
	}
	files := func(w http.ResponseWriter, r *http.Request, _ int) { serveAll(w, data) }

	run("redirect https->https across hosts (127.0.0.1 -> 127.0.0.2)", func(t *testing.T, n *netRun) func(*testing.T) string {
		cdn := startFault(t, "127.0.0.2:0", &good, files)
		origin := startFault(t, "127.0.0.1:0", &good, redirect(func() string { return cdn.URL + "/release/tool" }))
		n.start(t, origin.URL+"/tool", sha, "", true)
		return func(t *testing.T) string {
			r, _ := n.wait(t)
			n.installed(t, r, data)
			if cdn.requests() != 1 {
				t.Errorf("the CDN host got %d requests, want 1", cdn.requests())
			}
			n.proxySaw(t)
			return "followed; installed from the 127.0.0.2 host"
		}
	})

	run("redirect chain 127.0.0.1 -> localhost -> 127.0.0.3", func(t *testing.T, n *netRun) func(*testing.T) string {
		last := startFault(t, "127.0.0.3:0", &good, files)
		mid := startFault(t, "127.0.0.1:0", &good, redirect(func() string { return last.URL + "/cdn/tool" }))
		midURL := strings.Replace(mid.URL, "127.0.0.1", "localhost", 1)
		origin := startFault(t, "127.0.0.1:0", &good, redirect(func() string { return midURL + "/hop" }))
		n.start(t, origin.URL+"/tool", sha, "", true)
		return func(t *testing.T) string {
			r, _ := n.wait(t)
			n.installed(t, r, data)
			if mid.requests() != 1 || last.requests() != 1 {
				t.Errorf("hops got %d and %d requests, want 1 each", mid.requests(), last.requests())
			}
			n.proxySaw(t)
			return "followed two cross-host hops; installed"
		}
	})

	run("redirect https->http (downgrade)", func(t *testing.T, n *netRun) func(*testing.T) string {
		plain := startFault(t, "127.0.0.3:0", nil, files)
		origin := startFault(t, "127.0.0.1:0", &good, redirect(func() string { return plain.URL + "/tool" }))
		n.start(t, origin.URL+"/tool", sha, "", true)
		return func(t *testing.T) string {
			r, _ := n.wait(t)
			out := n.refused(t, r, origin.URL+"/tool", "redirect refused", "downgrades https to http")
			if plain.requests() != 0 {
				t.Errorf("the http target got %d requests", plain.requests())
			}
			n.proxySaw(t)
			return out
		}
	})

	run("redirect to file://", func(t *testing.T, n *netRun) func(*testing.T) string {
		local := filepath.Join(t.TempDir(), "tool")
		if err := os.WriteFile(local, data, 0o644); err != nil {
			t.Fatal(err)
		}
		origin := startFault(t, "127.0.0.1:0", &good, redirect(func() string { return "file://" + local }))
		n.start(t, origin.URL+"/tool", sha, "", true)
		return func(t *testing.T) string {
			r, _ := n.wait(t)
			out := n.refused(t, r, origin.URL+"/tool", "redirect refused", `scheme "file" is not http(s)`)
			n.proxySaw(t)
			return out
		}
	})

	run("redirect to https://169.254.169.254 (metadata)", func(t *testing.T, n *netRun) func(*testing.T) string {
		origin := startFault(t, "127.0.0.1:0", &good, redirect(func() string { return "https://169.254.169.254/latest/meta-data/tool" }))
		n.start(t, origin.URL+"/tool", sha, "", true)
		return func(t *testing.T) string {
			r, _ := n.wait(t)
			out := n.refused(t, r, origin.URL+"/tool", "redirect refused", "169.254.169.254", "link-local")
			n.proxySaw(t) // refused by nodeprov itself, before the proxy
			return out + " (proxy saw nothing)"
		}
	})

	run("redirect http->http://169.254.169.254 (metadata)", func(t *testing.T, n *netRun) func(*testing.T) string {
		origin := startFault(t, "127.0.0.1:0", nil, redirect(func() string { return "http://169.254.169.254/latest/meta-data/iam/" }))
		n.start(t, origin.URL+"/tool", sha, "", false)
		return func(t *testing.T) string {
			r, _ := n.wait(t)
			out := n.refused(t, r, origin.URL+"/tool", "redirect refused", "link-local")
			n.proxySaw(t)
			return out + " (proxy saw nothing)"
		}
	})

	run("redirect loop (more than 10 hops)", func(t *testing.T, n *netRun) func(*testing.T) string {
		var s *faultServer
		s = startFault(t, "127.0.0.1:0", &good, func(w http.ResponseWriter, r *http.Request, k int) {
			http.Redirect(w, r, fmt.Sprintf("%s/loop%d", s.URL, k), http.StatusFound)
		})
		n.start(t, s.URL+"/tool", sha, "", true)
		return func(t *testing.T) string {
			r, _ := n.wait(t)
			out := n.refused(t, r, "more than 10 redirects")
			if s.requests() > 11 {
				t.Errorf("%d requests for one attempt", s.requests())
			}
			return out
		}
	})

	// A private (here loopback) origin never leads to a public address,
	// proxied or not: the policy refuses the redirect before any request
	// is made, so the proxy trap sees nothing at all. The error names
	// both URLs.
	// toPublic checks a run refused the redirect from -> to (to a public
	// address ip) and the proxy saw nothing.
	toPublic := func(n *netRun, from, to, ip string) func(*testing.T) string {
		return func(t *testing.T) string {
			r, _ := n.wait(t)
			out := n.refused(t, r, "redirect refused", from+" -> "+to, "public address "+ip)
			n.proxySaw(t)
			return out + " (proxy saw nothing)"
		}
	}
	run("redirect https from loopback to a public address", func(t *testing.T, n *netRun) func(*testing.T) string {
		origin := startFault(t, "127.0.0.1:0", &good, redirect(func() string { return "https://192.0.2.10/tool" }))
		n.start(t, origin.URL+"/tool", sha, "", true)
		return toPublic(n, origin.URL+"/tool", "https://192.0.2.10/tool", "192.0.2.10")
	})
	run("redirect http from loopback to a public address", func(t *testing.T, n *netRun) func(*testing.T) string {
		origin := startFault(t, "127.0.0.1:0", nil, redirect(func() string { return "http://192.0.2.1/x" }))
		n.start(t, origin.URL+"/tool", sha, "", false)
		return toPublic(n, origin.URL+"/tool", "http://192.0.2.1/x", "192.0.2.1")
	})
	run("redirect chain loopback -> loopback -> public", func(t *testing.T, n *netRun) func(*testing.T) string {
		mid := startFault(t, "127.0.0.2:0", nil, redirect(func() string { return "http://198.51.100.7/tool" }))
		origin := startFault(t, "127.0.0.1:0", nil, redirect(func() string { return mid.URL + "/hop" }))
		n.start(t, origin.URL+"/tool", sha, "", false)
		return toPublic(n, mid.URL+"/hop", "http://198.51.100.7/tool", "198.51.100.7")
	})

	for _, c := range cases {
		table.run(t, c.name, false, c.check)
	}
}

// printableText reports whether s is valid UTF-8 with no control
// characters but newline and tab.
func printableText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r != '\n' && r != '\t' && !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
