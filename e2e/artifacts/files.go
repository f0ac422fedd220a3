package artifacts

import (
	"archive/tar"
	"compress/gzip"
	"encoding/hex"
	"hash"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// writeTarGz writes a gzip'd tar of members (member name -> source file),
// sorted, with a directory entry before the first member of each
// directory, like the upstream release tarballs. Members are regular files
// with mode 0755.
func writeTarGz(dst string, members map[string]string, level int) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	zw, err := gzip.NewWriterLevel(f, level)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	dirs := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(members)) {
		if d := filepath.Dir(strings.TrimPrefix(name, "./")); d != "." && !dirs[d] {
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
				return err
			}
		}
		if err := addMember(tw, name, members[name]); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}

func addMember(tw *tar.Writer, name, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: st.Size(), ModTime: st.ModTime()}); err != nil {
		return err
	}
	_, err = io.Copy(tw, in)
	return err
}

// writeSumFile writes "<hex>  <name>\n" to file+suffix, sha256sum and
// sha512sum style.
func writeSumFile(file, suffix string, h func() hash.Hash) error {
	sum, err := FileHash(file, h)
	if err != nil {
		return err
	}
	return os.WriteFile(file+suffix, []byte(sum+"  "+filepath.Base(file)+"\n"), 0o644)
}

// FileHash returns the hex digest of file's contents with h (sha256.New,
// sha512.New, …): what a checksum file or a spec's pin holds.
func FileHash(file string, h func() hash.Hash) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	hh := h()
	if _, err := io.Copy(hh, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(hh.Sum(nil)), nil
}

// CopyFile copies src (following a symbolic link: /usr/bin/runc is one)
// to dst with mode 0755, creating dst's directory.
func CopyFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// WriteRandom writes n bytes of ChaCha8 output seeded with seed to dst,
// creating its directory: incompressible (neither side gains from
// compression) and reproducible. Padding payloads are made of it, and so
// can Sources that stand in for real binaries.
func WriteRandom(dst string, n int64, seed uint64) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	if _, err := io.CopyN(f, rand.NewChaCha8(s), n); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// WriteTarGz writes dst as a release tarball of members (member name ->
// source file), as writeTarGz does, at gzip's default level.
func WriteTarGz(dst string, members map[string]string) error {
	return writeTarGz(dst, members, gzip.DefaultCompression)
}
