package artifacts

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
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
	s := &Server{URL: "http://" + ln.Addr().String(), done: make(chan struct{})}
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

// SetRate changes the per-connection cap (bytes per second; 0: none) for
// every connection, open ones included.
func (s *Server) SetRate(bytesPerSec float64) { s.rate.Store(math.Float64bits(max(bytesPerSec, 0))) }

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{Requests: s.requests.Load(), Conns: s.conns.Load(), Bytes: s.bytes.Load(), Active: s.active.Load(), Peak: s.peak.Load()}
}

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
	return &capConn{Conn: conn, s: l.s, tokens: bucketBurst, last: time.Now()}, nil
}

const (
	bucketBurst = 64 << 10 // bytes a connection may send at once after being idle
	writeChunk  = 32 << 10 // bytes written per pacing step
)

// capConn is a connection paced by a token bucket. net/http serializes
// writes on a connection, so it needs no lock.
type capConn struct {
	net.Conn
	s      *Server
	tokens float64
	last   time.Time
}

func (c *capConn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		rate := math.Float64frombits(c.s.rate.Load())
		chunk := len(p)
		if rate > 0 {
			chunk = min(chunk, writeChunk)
			now := time.Now()
			c.tokens = min(bucketBurst, c.tokens+now.Sub(c.last).Seconds()*rate)
			c.last = now
			// Take the tokens now and sleep off any debt: oversleeping
			// is paid back by the next refill, so the long-run rate is
			// exact.
			c.tokens -= float64(chunk)
			if c.tokens < 0 {
				time.Sleep(time.Duration(-c.tokens / rate * float64(time.Second)))
			}
		}
		n, err := c.Conn.Write(p[:chunk])
		written += n
		c.s.bytes.Add(int64(n))
		if err != nil {
			return written, err
		}
		p = p[chunk:]
	}
	return written, nil
}
