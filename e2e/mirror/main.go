// Command mirror serves release-shaped artifacts built from this machine's
// Debian binaries on a loopback address, laid out like the upstream release
// hosts (see package e2e/artifacts), and writes a spec that installs them
// through it. `make demo` runs it in the background:
//
//	go run ./e2e/mirror -spec-out _demo/node.yaml -ready _demo/mirror.url
//
// It builds the artifacts (runc signed with a key generated for this run),
// starts serving, writes the spec rendered from the template (default
// examples/demo-node.yaml: its mirrors[].to point at this server, and
// keyrings.runc holds the run's key inline), checks that every URL the spec
// expands to is served, then writes the ready file holding the server's URL.
// It logs a line per request on standard output and runs until SIGINT or
// SIGTERM, when it stops serving and removes the ready file and its
// temporary directory.
package main

import (
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/nodeprov/nodeprov/e2e/artifacts"
)

type config struct {
	addr     string
	dir      string  // build the tree here and keep it; "" for a temporary directory
	ready    string  // file to write the URL to once serving
	specIn   string  // spec template
	specOut  string  // rendered spec
	rate     float64 // per-connection cap, bytes/s
	level    int     // gzip level
	quiet    bool    // no request log
	sources  *artifacts.Sources
	log, out io.Writer // progress and request log
}

func main() {
	c := config{log: os.Stderr, out: os.Stdout}
	var rateMiB float64
	flag.StringVar(&c.addr, "addr", "127.0.0.1:0", "listen `address`; loopback only")
	flag.StringVar(&c.dir, "dir", "", "build the artifacts in `DIR` and keep them (default: a temporary directory, removed on exit)")
	flag.StringVar(&c.ready, "ready", "", "write the server's URL to `FILE` once everything is served (removed on exit)")
	flag.StringVar(&c.specIn, "spec", "examples/demo-node.yaml", "spec `template` to render")
	flag.StringVar(&c.specOut, "spec-out", "", "write the spec rendered for this mirror to `FILE` (default: none)")
	flag.Float64Var(&rateMiB, "rate", 0, "cap every connection at `MiB/s` (0: no cap)")
	flag.IntVar(&c.level, "gzip", gzip.DefaultCompression, "gzip `level` of the tarballs (1 fastest … 9 smallest; -1 default)")
	flag.BoolVar(&c.quiet, "quiet", false, "do not log requests")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./e2e/mirror [flags]\n\n"+
			"Serves release-shaped containerd, runc, CNI and gVisor artifacts built from this\n"+
			"machine's Debian packages (%v) on loopback until SIGINT/SIGTERM.\n\nFlags:\n", artifacts.DebianPackages)
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	c.rate = rateMiB * (1 << 20)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, nil); err != nil {
		fmt.Fprintln(os.Stderr, "mirror:", err)
		os.Exit(1)
	}
}

// run builds, serves and writes the spec and the ready file, then serves
// until ctx ends; started, when set, receives the server's URL once the
// ready file is written.
func run(ctx context.Context, c config, started chan<- string) (err error) {
	if runtime.GOARCH != "amd64" {
		return fmt.Errorf("the artifacts are laid out for amd64 (from this machine's binaries), and this is %s", runtime.GOARCH)
	}
	var tmpl []byte
	if c.specOut != "" {
		if tmpl, err = os.ReadFile(c.specIn); err != nil {
			return err
		}
	}
	dir := c.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "nodeprov-mirror-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	start := time.Now()
	tree, err := artifacts.Build(dir, artifacts.Options{Sources: c.sources, Compression: c.level})
	if err != nil {
		return err
	}
	what := "this machine's Debian binaries"
	if c.sources != nil {
		what = "the given sources"
	}
	fmt.Fprintf(c.log, "mirror: built %d artifacts (%s) from %s in %.1fs; runc signed by key %X\n",
		len(tree.Artifacts), mib(tree.Total()), what, time.Since(start).Seconds(), tree.Signer.PrimaryKey.Fingerprint)

	var wrap func(http.Handler) http.Handler
	if !c.quiet {
		wrap = logRequests(c.out)
	}
	srv, err := artifacts.Serve(tree.Dir, artifacts.ServerOptions{Addr: c.addr, Rate: c.rate, Wrap: wrap})
	if err != nil {
		return err
	}
	defer srv.Close()
	for _, a := range tree.Artifacts {
		fmt.Fprintf(c.log, "  %-12s %8s  %s\n", a.Name, mib(a.Size), a.Upstream)
	}
	fmt.Fprintf(c.log, "mirror: serving them at %s/ (https://github.com/ -> /github/, https://storage.googleapis.com/ -> /gcs/)\n", srv.URL)

	if c.specOut != "" {
		spec, err := renderSpec(tmpl, srv.URL, tree.Keyring)
		if err != nil {
			return fmt.Errorf("%s: %w", c.specIn, err)
		}
		if err := checkServed(c.specOut, spec, tree, srv.URL); err != nil {
			return err
		}
		if err := writeFile(c.specOut, spec); err != nil {
			return err
		}
		fmt.Fprintf(c.log, "mirror: wrote %s from %s: mirrors point here, keyrings.runc holds this run's key\n", c.specOut, c.specIn)
	}
	if c.ready != "" {
		if err := writeFile(c.ready, []byte(srv.URL+"\n")); err != nil {
			return err
		}
		defer os.Remove(c.ready)
	}
	if started != nil {
		started <- srv.URL
	}
	<-ctx.Done()
	// Let requests in flight finish (and log) for a moment, then stop.
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	st := srv.Stats()
	fmt.Fprintf(c.log, "mirror: stopped after %d requests, %s sent\n", st.Requests, mib(st.Bytes))
	return nil
}

// logRequests logs one line per request once it is answered.
func logRequests(w io.Writer) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rec := &recorder{ResponseWriter: rw, status: http.StatusOK}
			h.ServeHTTP(rec, r)
			fmt.Fprintf(w, "%s %s %d %s %dms\n", r.Method, r.URL.Path, rec.status, mib(rec.bytes), time.Since(start).Milliseconds())
		})
	}
}

type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

// writeFile writes data to name through a temporary file and a rename, so
// a reader polling for it never sees it half-written.
func writeFile(name string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

func mib(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
}
