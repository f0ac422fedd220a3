package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeprov/nodeprov/stages/host"

	"github.com/nodeprov/nodeprov/stages/host/treetest"
)

// ent is one entry of a test archive.
type ent struct {
	name     string
	typ      byte
	mode     int64
	data     string
	linkname string
}

func file(name string, mode int64, data string) ent {
	return ent{name: name, typ: tar.TypeReg, mode: mode, data: data}
}

func dir(name string) ent { return ent{name: name, typ: tar.TypeDir, mode: 0o755} }

func symlink(name, target string) ent {
	return ent{name: name, typ: tar.TypeSymlink, mode: 0o777, linkname: target}
}

func hardlink(name, target string) ent {
	return ent{name: name, typ: tar.TypeLink, mode: 0o644, linkname: target}
}

func special(name string, typ byte) ent { return ent{name: name, typ: typ, mode: 0o644} }

// writeTar writes the entries as a tar stream with its end marker.
func writeTar(w io.Writer, entries []ent) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		h := &tar.Header{
			Name:     e.name,
			Typeflag: e.typ,
			Mode:     e.mode,
			Linkname: e.linkname,
			Format:   tar.FormatGNU,
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("write header %q: %w", e.name, err)
		}
		if _, err := io.WriteString(tw, e.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// tarBytes returns the uncompressed tar of the entries.
func tarBytes(tb testing.TB, entries ...ent) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := writeTar(&b, entries); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// gz compresses data as one gzip member.
func gz(tb testing.TB, data []byte) []byte {
	tb.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// tgz returns a .tar.gz of the entries.
func tgz(tb testing.TB, entries ...ent) []byte {
	tb.Helper()
	return gz(tb, tarBytes(tb, entries...))
}

// fromBytes is an open function for Install over fixed bytes.
func fromBytes(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// streamed is an open function whose archive is produced on the fly by
// write, through a pipe: only what the reader consumes is ever generated,
// and closing the reader stops the writer.
func streamed(write func(w io.Writer) error) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(write(pw)) }()
		return pr, nil
	}
}

// zeros writes n zero bytes to w.
func zeros(w io.Writer, n int64) error {
	buf := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := w.Write(buf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// testRoot is a root directory with an empty sibling "outside" directory.
type testRoot struct {
	root    *host.Root
	dir     string
	outside string
}

func newTestRoot(t *testing.T) testRoot {
	t.Helper()
	base := t.TempDir()
	tr := testRoot{dir: filepath.Join(base, "root"), outside: filepath.Join(base, "outside")}
	for _, d := range []string{tr.dir, tr.outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r, err := host.OpenRoot(tr.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	tr.root = r
	return tr
}

// assertEmpty fails unless dir holds nothing.
func assertEmpty(t *testing.T, what, dir string) {
	t.Helper()
	if s := treetest.Take(t, dir); len(s) > 0 {
		t.Errorf("%s is not empty: %s", what, strings.Join(s.Paths(), ", "))
	}
}

// wantError fails unless err is an *Error whose text contains every part.
func wantError(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", parts)
	}
	var ae *Error
	if !errors.As(err, &ae) {
		t.Errorf("error %q (%T) is not an *archive.Error", err, err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}
