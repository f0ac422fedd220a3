package artifacts

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// ServerOptions configure Serve.
type ServerOptions struct {
	// Addr is the host:port to listen on; the host must be a loopback
	// address ("localhost" means 127.0.0.1). Default 127.0.0.1:0.
	Addr string
	// Rate caps every TCP connection at this many bytes per second, the
	// way a CDN caps each connection; 0 serves at full speed. SetRate
	// changes it while the server runs.
	Rate float64
	// PerRequest applies Rate to each response body instead of each
	// connection: every request starts with a budget of its own, and the
	// body is flushed to the client as it is paced.
	PerRequest bool
	// Wrap, when set, wraps the file handler (faults, request counting).
	Wrap func(http.Handler) http.Handler
}

// Stats are what a Server saw since it started.
type Stats struct {
	Requests int64 // HTTP requests
	Conns    int64 // TCP connections accepted
	Bytes    int64 // bytes written to clients (headers and bodies)
	Active   int64 // requests being served now
	Peak     int64 // most requests served at the same time
}

// Sub returns the difference of the counters (Active and Peak are s's).
func (s Stats) Sub(o Stats) Stats {
	return Stats{Requests: s.Requests - o.Requests, Conns: s.Conns - o.Conns, Bytes: s.Bytes - o.Bytes, Active: s.Active, Peak: s.Peak}
}

// Server serves a directory (a Tree's Dir) over HTTP on a loopback address.
type Server struct {
	// URL is http://<loopback address>:<port>, without a trailing slash.
	URL string

	dir                            atomic.Pointer[string]
	rate                           atomic.Uint64 // math.Float64bits of bytes/s
	requests, conns, bytes, active atomic.Int64
	peak                           atomic.Int64
	perRequest                     bool
	srv                            *http.Server
	done                           chan struct{}
}

// Serve starts serving dir. Close stops it.
func Serve(dir string, o ServerOptions) (*Server, error) {
	addr := o.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("listen address %q: only a loopback address is allowed (e.g. 127.0.0.1:0)", addr)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, err
	}
	s := &Server{URL: "http://" + ln.Addr().String(), perRequest: o.PerRequest, done: make(chan struct{})}
	s.SetDir(dir)
	s.SetRate(o.Rate)
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.FileServer(http.Dir(*s.dir.Load())).ServeHTTP(w, r)
	})
	if o.Wrap != nil {
		h = o.Wrap(h)
	}
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		n := s.active.Add(1)
		defer s.active.Add(-1)
		for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
		}
		if s.perRequest {
			// Only ResponseWriter's methods are promoted: no ReadFrom,
			// so the file server cannot go around Write.
			w = &pacedResponse{ResponseWriter: w, s: s, b: bucket{tokens: bucketBurst, last: time.Now()}}
		}
		h.ServeHTTP(w, r)
	})
	s.srv = &http.Server{Handler: counted, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		s.srv.Serve(&capListener{Listener: ln, s: s})
	}()
	return s, nil
}

// SetDir switches the directory served, e.g. to another Tree (an upgrade
// in place); requests in flight finish with the old one.
func (s *Server) SetDir(dir string) { s.dir.Store(&dir) }

// SetRate changes the cap (bytes per second; 0: none) for every
// connection, open ones included (with PerRequest: for every request,
// those in flight included).
func (s *Server) SetRate(bytesPerSec float64) { s.rate.Store(math.Float64bits(max(bytesPerSec, 0))) }

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{Requests: s.requests.Load(), Conns: s.conns.Load(), Bytes: s.bytes.Load(), Active: s.active.Load(), Peak: s.peak.Load()}
}

// ResetPeak starts Stats.Peak over from the requests being served now,
// e.g. before each of several measured runs.
func (s *Server) ResetPeak() { s.peak.Store(s.active.Load()) }

// Shutdown stops accepting connections and waits until the requests in
// flight are answered or ctx ends; then the server is closed.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	<-s.done
	return err
}

// Close stops the server and closes every connection.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// LoopbackEnv is this process's environment without proxy settings and
// with NO_PROXY (and no_proxy) naming the loopback hosts: for a client
// command that must reach a Server directly.
func LoopbackEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "http_proxy", "https_proxy", "all_proxy", "no_proxy":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost")
}

// capListener hands out connections paced by a token bucket of their own:
// each gets the rate, however many connections a client opens.
type capListener struct {
	net.Listener
	s *Server
}

func (l *capListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.s.conns.Add(1)
	// Only net.Conn's methods are promoted: no ReadFrom, so net/http
	// cannot go around Write with sendfile.
	return &capConn{Conn: conn, s: l.s, b: bucket{tokens: bucketBurst, last: time.Now()}}, nil
}

const (
	bucketBurst = 64 << 10 // bytes a connection (or request) may send at once after being idle
	writeChunk  = 32 << 10 // bytes written per pacing step
)

// bucket is a token bucket of bytes.
type bucket struct {
	tokens float64
	last   time.Time
}

// take takes n tokens at rate bytes/s, sleeping off any debt: oversleeping
// is paid back by the next refill, so the long-run rate is exact.
func (b *bucket) take(n int, rate float64) {
	now := time.Now()
	b.tokens = min(bucketBurst, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	b.tokens -= float64(n)
	if b.tokens < 0 {
		time.Sleep(time.Duration(-b.tokens / rate * float64(time.Second)))
	}
}

// pace writes p with write in chunks, each after taking its tokens from b
// while the server's rate is set.
func (s *Server) pace(b *bucket, write func([]byte) (int, error), p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := len(p)
		if rate := math.Float64frombits(s.rate.Load()); rate > 0 {
			chunk = min(chunk, writeChunk)
			b.take(chunk, rate)
		}
		n, err := write(p[:chunk])
		written += n
		if err != nil {
			return written, err
		}
		p = p[chunk:]
	}
	return written, nil
}

// capConn is a connection paced by a token bucket, unless the server
// paces each request. net/http serializes writes on a connection, so it
// needs no lock.
type capConn struct {
	net.Conn
	s *Server
	b bucket
}

func (c *capConn) Write(p []byte) (int, error) {
	if c.s.perRequest {
		return c.write(p)
	}
	return c.s.pace(&c.b, c.write, p)
}

func (c *capConn) write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.s.bytes.Add(int64(n))
	return n, err
}

// pacedResponse is a response body paced by a token bucket of its own
// (ServerOptions.PerRequest); each paced chunk is flushed to the client.
type pacedResponse struct {
	http.ResponseWriter
	s *Server
	b bucket
}

func (w *pacedResponse) Write(p []byte) (int, error) {
	return w.s.pace(&w.b, w.write, p)
}

func (w *pacedResponse) write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	if f, ok := w.ResponseWriter.(http.Flusher); ok && err == nil && math.Float64frombits(w.s.rate.Load()) > 0 {
		f.Flush()
	}
	return n, err
}
