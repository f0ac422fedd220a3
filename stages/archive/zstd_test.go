package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// zst compresses data as one zstd frame with a checksum, as zstd(1) and
// tar --zstd write it.
func zst(tb testing.TB, data []byte) []byte {
	tb.Helper()
	var b bytes.Buffer
	zw, err := zstd.NewWriter(&b, zstd.WithEncoderCRC(true))
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := zw.Write(data); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// tzst returns a .tar.zst of the entries.
func tzst(tb testing.TB, entries ...ent) []byte {
	tb.Helper()
	return zst(tb, tarBytes(tb, entries...))
}

// zstdTar writes a .tar.zst whose tar stream is produced by body.
func zstdTar(w io.Writer, body func(tw *tar.Writer, zw io.Writer) error) error {
	zw, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1))
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	if err := body(tw, zw); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// kataRelease is a small archive laid out like kata-static-<v>-<arch>.tar.zst:
// members under ./opt/kata/, configuration.toml a symlink.
func kataRelease(tb testing.TB) []byte {
	return tzst(tb,
		dir("./opt/"), dir("./opt/kata/"), dir("./opt/kata/bin/"),
		file("./opt/kata/bin/containerd-shim-kata-v2", 0o755, strings.Repeat("shim ", 4000)),
		file("./opt/kata/bin/kata-runtime", 0o755, strings.Repeat("runtime ", 4000)),
		dir("./opt/kata/share/defaults/kata-containers/"),
		file("./opt/kata/share/defaults/kata-containers/configuration-qemu.toml", 0o644, "[hypervisor.qemu]\n"),
		symlink("./opt/kata/share/defaults/kata-containers/configuration.toml", "configuration-qemu.toml"),
	)
}

var selKata = Selection{Files: map[string]string{
	"opt/kata/bin/containerd-shim-kata-v2":                            "/opt/kata/bin/containerd-shim-kata-v2",
	"opt/kata/bin/kata-runtime":                                       "/opt/kata/bin/kata-runtime",
	"opt/kata/share/defaults/kata-containers/configuration-qemu.toml": "/opt/kata/share/defaults/kata-containers/configuration-qemu.toml",
}}

// zstdWindowFrame is the header of a zstd frame that declares a window
// of 2^log bytes, followed by an empty last raw block.
func zstdWindowFrame(log int) []byte {
	b := []byte(zstdMagic)
	b = append(b, 0x00)              // frame header descriptor: no content size, no checksum
	b = append(b, byte((log-10)<<3)) // window descriptor: exponent, no mantissa
	var blk [4]byte
	binary.LittleEndian.PutUint32(blk[:], 1) // last block, raw, size 0
	return append(b, blk[:3]...)
}

// zstdSkippable is a skippable frame holding data.
func zstdSkippable(data string) []byte {
	b := []byte{0x50, 0x2a, 0x4d, 0x18}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// zstdCorpus holds the zstd cases of the hostile corpus: the stream
// rules of gzip, checked for the other format.
func zstdCorpus() []hostileCase {
	const gib = 1 << 30
	bin := file("bin/containerd", 0o755, "containerd binary")
	ctr := file("bin/ctr", 0o755, "ctr binary")
	zeroMemberZstd := func(size int64) func(w io.Writer) error {
		return func(w io.Writer) error {
			return zstdTar(w, func(tw *tar.Writer, _ io.Writer) error {
				if err := tw.WriteHeader(&tar.Header{Name: "bin/containerd", Typeflag: tar.TypeReg, Mode: 0o755, Size: size}); err != nil {
					return err
				}
				return zeros(tw, size)
			})
		}
	}
	return []hostileCase{
		{name: "zstd: path traversal", sel: selContainerd,
			open: archive(func(t testing.TB, _ string) []byte {
				return tzst(t, bin, ctr, file("../../etc/passwd", 0o644, "x"))
			}),
			want: []string{`archive member "../../etc/passwd": unsafe name: path has a ".." component`}},
		{name: "zstd: selected symlink (kata's configuration.toml)",
			sel:  Selection{Files: map[string]string{"opt/kata/share/defaults/kata-containers/configuration.toml": "/opt/kata/configuration.toml"}},
			open: archive(func(t testing.TB, _ string) []byte { return kataRelease(t) }),
			want: []string{`archive member "opt/kata/share/defaults/kata-containers/configuration.toml": is a symlink to "configuration-qemu.toml"; only regular files are installed`}},
		{name: "zstd bomb: compression ratio", sel: selContainerd,
			lim:  Limits{MaxMemberSize: 2 * gib, MaxTotalSize: 4 * gib},
			open: lazy(zeroMemberZstd(gib)),
			want: []string{`archive member "bin/containerd": compression ratio exceeds 100:1`, `(a decompression bomb?)`}},
		{name: "zstd bomb: decompressed size", sel: selContainerd,
			lim: Limits{MaxTotalSize: 8 << 20, MaxCompressionRatio: -1},
			open: lazy(func(w io.Writer) error {
				return zstdTar(w, func(tw *tar.Writer, zw io.Writer) error {
					if err := writeTar(zw, []ent{bin, ctr}); err != nil {
						return err
					}
					return zeros(zw, gib)
				})
			}),
			want: []string{`archive: decompressed data exceeds the limit of 8388608 bytes (a decompression bomb?)`}},
		{name: "zstd: window too large", sel: selContainerd,
			open: archive(func(testing.TB, string) []byte { return zstdWindowFrame(30) }),
			want: []string{`archive: zstd frame needs a window larger than the limit of 16777216 bytes`}},
		{name: "zstd: truncated", sel: selContainerd,
			open: archive(func(t testing.TB, _ string) []byte {
				b := tzst(t, bin, ctr)
				return b[:len(b)-4]
			}),
			want: []string{`truncated zstd stream`}},
		{name: "zstd: truncated in a member", sel: selKata,
			open: archive(func(t testing.TB, _ string) []byte {
				b := kataRelease(t)
				return b[:len(b)/2]
			}),
			want: []string{`truncated zstd stream`}},
		{name: "zstd: truncated header", sel: selContainerd,
			open: archive(func(testing.TB, string) []byte { return []byte(zstdMagic) }),
			want: []string{`archive: truncated zstd stream`}},
		{name: "zstd: corrupt checksum", sel: selContainerd,
			open: archive(func(t testing.TB, _ string) []byte {
				b := slices.Clone(tzst(t, bin, ctr))
				b[len(b)-1] ^= 0xff
				return b
			}),
			want: []string{`archive: corrupt zstd stream (checksum mismatch)`}},
		{name: "zstd: trailing garbage", sel: selContainerd,
			open: archive(func(t testing.TB, _ string) []byte {
				return slices.Concat(tzst(t, bin, ctr), []byte("#!/bin/sh\nrm -rf /\n"))
			}),
			want: []string{`archive: trailing garbage after the zstd stream`}},
		{name: "zstd: trailing zeros", sel: selContainerd,
			open: archive(func(t testing.TB, _ string) []byte {
				return slices.Concat(tzst(t, bin, ctr), make([]byte, 1024))
			}),
			want: []string{`archive: trailing garbage after the zstd stream`}},
		{name: "zstd: hidden entries after the end of the archive", sel: selContainerd,
			open: archive(func(t testing.TB, _ string) []byte {
				return zst(t, slices.Concat(tarBytes(t, bin, ctr), tarBytes(t, file("../../etc/passwd", 0o644, "x"))))
			}),
			want: []string{`archive: data after the end of the tar archive`}},
		{name: "zstd: hidden entries in a second frame", sel: selContainerd,
			open: archive(func(t testing.TB, _ string) []byte {
				return slices.Concat(tzst(t, bin, ctr), zst(t, tarBytes(t, file("../../etc/passwd", 0o644, "x"))))
			}),
			want: []string{`archive: data after the end of the tar archive`}},
		{name: "zstd of garbage", sel: selContainerd,
			open: archive(func(t testing.TB, _ string) []byte { return zst(t, bytes.Repeat([]byte("garbage!"), 200)) }),
			want: []string{`archive: invalid tar stream: archive/tar: invalid tar header`}},
		{name: "zstd: skippable frame first", sel: selContainerd,
			open: archive(func(t testing.TB, _ string) []byte { return slices.Concat(zstdSkippable("meta"), tzst(t, bin, ctr)) }),
			want: []string{`archive: not a gzip- or zstd-compressed tar archive (starts with 50 2a 4d 18`}},
	}
}

// TestZstdRelease installs the members of a Kata-shaped .tar.zst: the
// format is found by its magic bytes, the unselected symlink is ignored.
func TestZstdRelease(t *testing.T) {
	r := newTestRoot(t)
	members, err := Install(context.Background(), r.root, fromBytes(kataRelease(t)), selKata, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 3 {
		t.Fatalf("installed %d members, want 3: %+v", len(members), members)
	}
	for _, m := range members {
		if m.Target != selKata.Files[m.Name] {
			t.Errorf("member %s installed at %s", m.Name, m.Target)
		}
	}
	assertEmpty(t, "outside", r.outside)
}

// TestZstdFrames accepts what zstd(1) accepts after the first frame:
// more frames, and skippable frames (metadata). The file itself must start
// with a frame (tar --zstd writes one), not a skippable frame.
func TestZstdFrames(t *testing.T) {
	tb := tarBytes(t, file("bin/containerd", 0o755, "containerd binary"), file("bin/ctr", 0o755, "ctr binary"))
	for name, data := range map[string][]byte{
		"two frames":       slices.Concat(zst(t, tb[:1024]), zst(t, tb[1024:])),
		"skippable frames": slices.Concat(zst(t, tb[:512]), zstdSkippable("meta"), zst(t, tb[512:]), zstdSkippable("trailer")),
	} {
		t.Run(name, func(t *testing.T) {
			members, err := Plan(bytes.NewReader(data), selContainerd, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if len(members) != 2 {
				t.Fatalf("got %d members, want 2", len(members))
			}
		})
	}
}
