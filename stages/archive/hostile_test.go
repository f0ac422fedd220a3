package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
)

// hostileCase is one malicious or broken archive. Its open function gets
// the absolute host path of a directory outside the root, for links that
// point there.
type hostileCase struct {
	name string
	sel  Selection
	lim  Limits
	open func(t testing.TB, outside string) func() (io.ReadCloser, error)
	want []string // parts of the error text
}

var (
	selContainerd = Selection{Files: map[string]string{
		"bin/containerd": "/usr/local/bin/containerd",
		"bin/ctr":        "/usr/local/bin/ctr",
	}}
	selTree = Selection{To: "/usr/local/bin", Strip: 1}
	selAll  = Selection{To: "/opt/cni/bin"}
)

// archive adapts a fixed archive to hostileCase.open.
func archive(build func(t testing.TB, outside string) []byte) func(t testing.TB, outside string) func() (io.ReadCloser, error) {
	return func(t testing.TB, outside string) func() (io.ReadCloser, error) {
		return fromBytes(build(t, outside))
	}
}

// entries is archive for a .tar.gz of fixed entries.
func entries(es ...ent) func(t testing.TB, outside string) func() (io.ReadCloser, error) {
	return archive(func(t testing.TB, _ string) []byte { return tgz(t, es...) })
}

// lazy adapts a streamed archive to hostileCase.open.
func lazy(write func(w io.Writer) error) func(t testing.TB, outside string) func() (io.ReadCloser, error) {
	return func(testing.TB, string) func() (io.ReadCloser, error) { return streamed(write) }
}

// gzipTar writes a .tar.gz whose tar stream is produced by body.
func gzipTar(w io.Writer, body func(tw *tar.Writer, zw io.Writer) error) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	if err := body(tw, zw); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// zeroMember streams an archive with one member of size zero bytes.
func zeroMember(size int64) func(w io.Writer) error {
	return func(w io.Writer) error {
		return gzipTar(w, func(tw *tar.Writer, _ io.Writer) error {
			if err := tw.WriteHeader(&tar.Header{Name: "bin/containerd", Typeflag: tar.TypeReg, Mode: 0o755, Size: size}); err != nil {
				return err
			}
			return zeros(tw, size)
		})
	}
}

func hostileCorpus() []hostileCase {
	const gib = 1 << 30
	bin := file("bin/containerd", 0o755, "containerd binary")
	ctr := file("bin/ctr", 0o755, "ctr binary")
	cases := []hostileCase{
		// Names.
		{name: "path traversal", sel: selContainerd,
			open: entries(bin, ctr, file("../../etc/passwd", 0o644, "root::0:0::/:/bin/sh")),
			want: []string{`archive member "../../etc/passwd": unsafe name: path has a ".." component`}},
		{name: "path traversal in tree", sel: selAll,
			open: entries(file("./bridge", 0o755, "x"), file("./../../../etc/cron.d/x", 0o644, "x")),
			want: []string{`archive member "./../../../etc/cron.d/x": unsafe name`}},
		{name: "traversal through a directory", sel: selContainerd,
			open: entries(bin, ctr, file("bin/../../x", 0o755, "x")),
			want: []string{`archive member "bin/../../x": unsafe name: path has a ".." component`}},
		{name: "dotdot that cleans away", sel: selContainerd,
			open: entries(bin, file("bin/../bin/ctr", 0o755, "x")),
			want: []string{`archive member "bin/../bin/ctr": unsafe name`}},
		{name: "absolute path", sel: selContainerd,
			open: entries(bin, ctr, file("/etc/passwd", 0o644, "root::0:0::/:/bin/sh")),
			want: []string{`archive member "/etc/passwd": unsafe name: absolute path`}},
		{name: "empty name", sel: selAll,
			open: entries(file("", 0o644, "x")),
			want: []string{`unsafe name: empty name`}},
		{name: "very long name", sel: selAll,
			open: entries(file(strings.Repeat("a/", 600)+"x", 0o644, "x")),
			want: []string{`unsafe name: name is longer than 1024 bytes`}},
		{name: "archive root as a file", sel: selAll,
			open: entries(file(".", 0o644, "x")),
			want: []string{`archive member ".": names the archive root but is a regular file`}},

		// Links through which a file would be written.
		{name: "symlink then a file through it", sel: selContainerd,
			open: archive(func(t testing.TB, outside string) []byte {
				return tgz(t, symlink("bin", outside), bin, ctr)
			}),
			want: []string{`archive member "bin/containerd": its parent "bin" is a symlink to "/`, `/outside" in the archive; refusing to write through it`}},
		{name: "file then a symlink over its directory", sel: selContainerd,
			open: archive(func(t testing.TB, outside string) []byte {
				return tgz(t, dir("bin"), bin, ctr, symlink("bin", outside))
			}),
			want: []string{`archive member "bin/containerd": its parent "bin" is a symlink to`}},
		{name: "symlink in a stripped component", sel: selTree,
			open: entries(symlink("bin", "/etc"), bin),
			want: []string{`archive member "bin/containerd": its parent "bin" is a symlink to "/etc"`}},
		{name: "relative symlink escaping", sel: Selection{Files: map[string]string{"a/b/etc/shadow": "/etc/shadow"}},
			open: entries(dir("a"), symlink("a/b", "../../../.."), file("a/b/etc/shadow", 0o644, "x")),
			want: []string{`archive member "a/b/etc/shadow": its parent "a/b" is a symlink to "../../../.."`}},
		{name: "hard link as a directory", sel: selContainerd,
			open: entries(hardlink("bin", "/etc"), bin, ctr),
			want: []string{`its parent "bin" is a hard link to "/etc"`}},
		{name: "file as a directory", sel: selContainerd,
			open: entries(file("bin", 0o755, "x"), bin, ctr),
			want: []string{`its parent "bin" is a regular file in the archive`}},

		// Entries that are not regular files.
		{name: "selected symlink", sel: selContainerd,
			open: entries(symlink("bin/containerd", "/etc/shadow"), ctr),
			want: []string{`archive member "bin/containerd": is a symlink to "/etc/shadow"; only regular files are installed`}},
		{name: "symlink in a whole tree", sel: selAll,
			open: entries(file("./bridge", 0o755, "x"), symlink("./loopback", "/bin/sh")),
			want: []string{`archive member "loopback": is a symlink to "/bin/sh"`}},
		{name: "hard link to /etc/shadow", sel: selContainerd,
			open: entries(ctr, hardlink("bin/containerd", "/etc/shadow")),
			want: []string{`archive member "bin/containerd": is a hard link to "/etc/shadow"; only regular files are installed`}},
		{name: "hard link in a tree", sel: selAll,
			open: entries(file("./bridge", 0o755, "x"), hardlink("./shadow", "../../etc/shadow")),
			want: []string{`archive member "shadow": is a hard link to "../../etc/shadow"`}},
		{name: "character device", sel: selContainerd,
			open: entries(special("bin/containerd", tar.TypeChar), ctr),
			want: []string{`archive member "bin/containerd": is a character device`}},
		{name: "block device", sel: selAll,
			open: entries(special("./sda", tar.TypeBlock)),
			want: []string{`archive member "sda": is a block device`}},
		{name: "fifo", sel: selContainerd,
			open: entries(bin, special("bin/ctr", tar.TypeFifo)),
			want: []string{`archive member "bin/ctr": is a FIFO`}},
		{name: "unknown entry type", sel: selContainerd,
			open: entries(bin, special("bin/ctr", 'Z')),
			want: []string{`archive member "bin/ctr": is an entry of unsupported type 'Z'`}},
		{name: "directory selected as a file", sel: selContainerd,
			open: entries(bin, dir("bin/ctr")),
			want: []string{`archive member "bin/ctr": is a directory; only regular files are installed`}},

		// Modes.
		{name: "setuid member", sel: selContainerd,
			open: entries(bin, file("bin/ctr", 0o4755, "x")),
			want: []string{`archive member "bin/ctr": has the setuid or setgid bit (mode 4755); such files are refused`}},
		{name: "setgid member", sel: selTree,
			open: entries(file("bin/containerd", 0o2711, "x")),
			want: []string{`archive member "bin/containerd": has the setuid or setgid bit (mode 2711)`}},

		// Duplicates.
		{name: "duplicate member", sel: selContainerd,
			open: entries(bin, ctr, file("bin/containerd", 0o755, "evil")),
			want: []string{`archive member "bin/containerd": appears more than once in the archive; which copy would win is ambiguous`}},
		{name: "duplicate after normalising", sel: selAll,
			open: entries(file("./bridge", 0o755, "x"), file("bridge", 0o755, "y")),
			want: []string{`archive member "bridge": appears more than once`}},
		{name: "directory and file of one name", sel: selTree,
			open: entries(dir("bin/containerd"), bin),
			want: []string{`archive member "bin/containerd": appears more than once`}},

		// Bombs and limits.
		{name: "gzip bomb: declared member size", sel: selContainerd,
			open: lazy(zeroMember(gib)),
			want: []string{`archive member "bin/containerd": size 1073741824 exceeds the limit of 536870912 bytes per member`}},
		{name: "gzip bomb: compression ratio", sel: selContainerd,
			lim:  Limits{MaxMemberSize: 2 * gib, MaxTotalSize: 4 * gib},
			open: lazy(zeroMember(gib)),
			want: []string{`archive member "bin/containerd": compression ratio exceeds 100:1`, `(a decompression bomb?)`}},
		{name: "gzip bomb: decompressed size", sel: selContainerd,
			lim: Limits{MaxTotalSize: 8 << 20, MaxCompressionRatio: -1},
			open: lazy(func(w io.Writer) error {
				return gzipTar(w, func(tw *tar.Writer, zw io.Writer) error {
					if err := writeTar(zw, []ent{bin, ctr}); err != nil {
						return err
					}
					// A gigabyte of zeros after the end-of-archive marker.
					return zeros(zw, gib)
				})
			}),
			want: []string{`archive: decompressed data exceeds the limit of 8388608 bytes (a decompression bomb?)`}},
		{name: "sizes add up past the total limit", sel: selAll,
			lim: Limits{MaxTotalSize: 3 << 20, MaxCompressionRatio: -1},
			open: lazy(func(w io.Writer) error {
				return gzipTar(w, func(tw *tar.Writer, _ io.Writer) error {
					for i := range 4 {
						if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprint(i), Typeflag: tar.TypeReg, Mode: 0o644, Size: 2 << 20}); err != nil {
							return err
						}
						if err := zeros(tw, 2<<20); err != nil {
							return err
						}
					}
					return nil
				})
			}),
			want: []string{`archive member "1": member sizes add up to more than the limit of 3145728 bytes`}},
		{name: "huge member count", sel: selAll,
			lim: Limits{MaxMembers: 100},
			open: lazy(func(w io.Writer) error {
				return gzipTar(w, func(tw *tar.Writer, _ io.Writer) error {
					for i := range 10_000_000 {
						if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprint(i), Typeflag: tar.TypeReg, Mode: 0o644}); err != nil {
							return err
						}
					}
					return nil
				})
			}),
			want: []string{`archive: more than 100 members (the limit)`}},

		// Broken streams.
		{name: "truncated gzip", sel: selContainerd,
			open: archive(func(t testing.TB, _ string) []byte {
				b := containerdRelease(t)
				return b[:len(b)-4]
			}),
			want: []string{`archive: truncated gzip stream`}},
		{name: "truncated gzip in a member", sel: selContainerd,
			open: archive(func(t testing.TB, _ string) []byte {
				b := tgz(t, file("bin/containerd", 0o755, strings.Repeat("containerd binary ", 50000)), ctr)
				return b[:len(b)/2]
			}),
			want: []string{`archive member "bin/containerd": truncated gzip stream`}},
		{name: "truncated gzip header", sel: selContainerd,
			open: archive(func(t testing.TB, _ string) []byte { return containerdRelease(t)[:5] }),
			want: []string{`archive: truncated gzip stream`}},
		{name: "corrupt gzip checksum", sel: selContainerd,
			open: archive(func(t testing.TB, _ string) []byte {
				b := slices.Clone(containerdRelease(t))
				b[len(b)-8] ^= 0xff
				return b
			}),
			want: []string{`archive: corrupt gzip stream (checksum mismatch)`}},
		{name: "trailing garbage", sel: selContainerd,
			open: archive(func(t testing.TB, _ string) []byte {
				return slices.Concat(containerdRelease(t), []byte("#!/bin/sh\nrm -rf /\n"))
			}),
			want: []string{`archive: trailing garbage after the gzip stream at byte`}},
		{name: "trailing zeros", sel: selContainerd,
			open: archive(func(t testing.TB, _ string) []byte {
				return slices.Concat(containerdRelease(t), make([]byte, 1024))
			}),
			want: []string{`archive: trailing garbage after the gzip stream`}},
		{name: "hidden entries after the end of the archive", sel: selContainerd,
			open: archive(func(t testing.TB, _ string) []byte {
				return gz(t, slices.Concat(tarBytes(t, bin, ctr), tarBytes(t, file("../../etc/passwd", 0o644, "x"))))
			}),
			want: []string{`archive: data after the end of the tar archive`}},
		{name: "non-gzip garbage", sel: selContainerd,
			open: archive(func(testing.TB, string) []byte { return []byte("<html>404 Not Found</html>") }),
			want: []string{`archive: not a gzip- or zstd-compressed tar archive (starts with 3c 68 74 6d 6c 3e 34 30)`}},
		{name: "uncompressed tar", sel: selContainerd,
			open: archive(func(t testing.TB, _ string) []byte { return tarBytes(t, bin, ctr) }),
			want: []string{`archive: uncompressed tar archive: only gzip- or zstd-compressed tar (.tar.gz, .tgz, .tar.zst) is accepted`}},
		{name: "empty file", sel: selContainerd,
			open: archive(func(testing.TB, string) []byte { return nil }),
			want: []string{`archive: empty file, not a compressed tar archive`}},
		{name: "gzip of garbage", sel: selContainerd,
			open: archive(func(t testing.TB, _ string) []byte { return gz(t, bytes.Repeat([]byte("garbage!"), 200)) }),
			want: []string{`archive: invalid tar stream: archive/tar: invalid tar header`}},
		{name: "truncated tar in a complete gzip", sel: selContainerd,
			open: archive(func(t testing.TB, _ string) []byte {
				b := tarBytes(t, bin, file("bin/ctr", 0o755, strings.Repeat("x", 5000)))
				return gz(t, b[:2048])
			}),
			want: []string{`archive member "bin/ctr": truncated tar stream`}},

		// Selections that do not match.
		{name: "selected member missing", sel: Selection{Files: map[string]string{
			"containerd": "/usr/local/bin/containerd",
			"bin/ctr":    "/usr/local/bin/ctr",
		}},
			open: archive(func(t testing.TB, _ string) []byte { return containerdRelease(t) }),
			want: []string{`archive: not found in the archive: "containerd" (for /usr/local/bin/containerd); the archive has "bin/containerd-shim-runc-v2", "bin/containerd", "bin/containerd-stress", "bin/ctr"; did you mean "bin/containerd"?`}},
		{name: "included member missing", sel: Selection{To: "/opt/cni/bin", Include: []string{"bridge", "flannel"}},
			open: archive(func(t testing.TB, _ string) []byte { return cniRelease(t) }),
			want: []string{`archive: not found in the archive: "flannel"; the archive has "LICENSE", "README.md", "bridge", "host-local", "loopback"`}},
		{name: "strip removes everything", sel: Selection{To: "/opt/cni/bin", Strip: 1},
			open: archive(func(t testing.TB, _ string) []byte { return cniRelease(t) }),
			want: []string{`archive: no regular files to install under /opt/cni/bin with strip 1; the archive has "LICENSE"`}},
	}
	return append(cases, zstdCorpus()...)
}

// TestHostile runs the corpus through Plan and Install: each is refused
// with a clear error, and nothing is written in the root or outside it.
func TestHostile(t *testing.T) {
	for _, tt := range hostileCorpus() {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRoot(t)
			open := tt.open(t, r.outside)

			rc, err := open()
			if err != nil {
				t.Fatal(err)
			}
			members, err := Plan(rc, tt.sel, tt.lim)
			rc.Close()
			wantError(t, err, tt.want...)
			if members != nil {
				t.Errorf("Plan returned members %+v with its error", members)
			}

			members, err = Install(context.Background(), r.root, open, tt.sel, tt.lim)
			wantError(t, err, tt.want...)
			t.Log(err)
			if members != nil {
				t.Errorf("Install returned members %+v with its error", members)
			}
			assertEmpty(t, "root", r.dir)
			assertEmpty(t, "outside", r.outside)
		})
	}
}
