package main

import (
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// counters are what the server saw; the benchmark snapshots them around
// each run.
type counters struct {
	requests atomic.Int64 // HTTP requests
	conns    atomic.Int64 // TCP connections accepted
	bytes    atomic.Int64 // bytes written to clients (headers and bodies)
	active   atomic.Int64 // connections currently writing a body
	peak     atomic.Int64 // most connections writing at the same time
}

type snapshot struct{ requests, conns, bytes int64 }

func (c *counters) snap() snapshot {
	return snapshot{c.requests.Load(), c.conns.Load(), c.bytes.Load()}
}

func (s snapshot) sub(o snapshot) snapshot {
	return snapshot{s.requests - o.requests, s.conns - o.conns, s.bytes - o.bytes}
}

// server serves the tree on 127.0.0.1, every TCP connection limited to
// rate bytes per second (0: no limit), the way a CDN caps each connection.
type server struct {
	url string
	c   *counters
	srv *http.Server
}

func serve(dir string, rate float64, c *counters) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	files := http.FileServer(http.Dir(dir))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.requests.Add(1)
		n := c.active.Add(1)
		for {
			p := c.peak.Load()
			if n <= p || c.peak.CompareAndSwap(p, n) {
				break
			}
		}
		defer c.active.Add(-1)
		files.ServeHTTP(w, r)
	})
	s := &server{
		url: "http://" + ln.Addr().String(),
		c:   c,
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second},
	}
	go s.srv.Serve(&capListener{Listener: ln, rate: rate, c: c})
	return s, nil
}

func (s *server) close() { s.srv.Close() }

// capListener hands out connections whose writes are paced by a token
// bucket of their own: each connection gets rate bytes/s, however many
// connections a client opens.
type capListener struct {
	net.Listener
	rate float64
	c    *counters
}

func (l *capListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.c.conns.Add(1)
	// Only net.Conn's methods are promoted: no ReadFrom, so net/http
	// cannot bypass Write with sendfile.
	return &capConn{Conn: conn, rate: l.rate, burst: bucketBurst, tokens: bucketBurst, last: time.Now(), c: l.c}, nil
}

const (
	bucketBurst = 64 << 10 // bytes a connection may send at once after being idle
	writeChunk  = 32 << 10 // bytes written per pacing step
)

// capConn is a connection paced by a token bucket. net/http serializes
// writes on a connection, so it needs no lock.
type capConn struct {
	net.Conn
	rate   float64 // bytes per second; 0: unlimited
	burst  float64
	tokens float64
	last   time.Time
	c      *counters
}

func (c *capConn) Write(p []byte) (int, error) {
	if c.rate <= 0 {
		n, err := c.Conn.Write(p)
		c.c.bytes.Add(int64(n))
		return n, err
	}
	written := 0
	for len(p) > 0 {
		chunk := min(len(p), writeChunk)
		now := time.Now()
		c.tokens = min(c.burst, c.tokens+now.Sub(c.last).Seconds()*c.rate)
		c.last = now
		// Take the tokens now and sleep off any debt: oversleeping is
		// paid back by the next refill, so the long-run rate is exact.
		c.tokens -= float64(chunk)
		if c.tokens < 0 {
			time.Sleep(time.Duration(-c.tokens / c.rate * float64(time.Second)))
		}
		n, err := c.Conn.Write(p[:chunk])
		written += n
		c.c.bytes.Add(int64(n))
		if err != nil {
			return written, err
		}
		p = p[chunk:]
	}
	return written, nil
}
