package artifacts

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// CrictlVersion is the cri-tools release built for the tests and the pods
// demo (the newest the module proxy serves).
const CrictlVersion = "1.37.0"

// BuildCrictl builds crictl from the cri-tools module into out/crictl,
// stamped with its version as upstream's release build does.
func BuildCrictl(ctx context.Context, out string, log io.Writer) error {
	src := filepath.Join(out, "src")
	defer os.RemoveAll(src)
	return BuildModuleMain(ctx, src, "sigs.k8s.io/cri-tools", "v"+CrictlVersion,
		"sigs.k8s.io/cri-tools/cmd/crictl", filepath.Join(out, "crictl"), log,
		"sigs.k8s.io/cri-tools/pkg/version.Version=v"+CrictlVersion)
}

// PackCrictl lays out crictl's release as upstream publishes it, under
// dir/cri-tools/v<version>/: crictl-v<v>-linux-amd64.tar.gz with the one
// member crictl, and a .sha256 file holding the bare hash. It returns the
// release directory (relative to dir, to append to a server's URL) and the
// tarball's sha256.
func PackCrictl(dir, bin string) (rel, sha string, err error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", "", err
	}
	var tgz bytes.Buffer
	gz := gzip.NewWriter(&tgz)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: "crictl", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data))}); err != nil {
		return "", "", err
	}
	if _, err := tw.Write(data); err != nil {
		return "", "", err
	}
	if err := tw.Close(); err != nil {
		return "", "", err
	}
	if err := gz.Close(); err != nil {
		return "", "", err
	}
	rel = "cri-tools/v" + CrictlVersion
	if err := os.MkdirAll(filepath.Join(dir, rel), 0o755); err != nil {
		return "", "", err
	}
	file := filepath.Join(dir, rel, fmt.Sprintf("crictl-v%s-linux-amd64.tar.gz", CrictlVersion))
	sha = fmt.Sprintf("%x", sha256.Sum256(tgz.Bytes()))
	if err := os.WriteFile(file, tgz.Bytes(), 0o644); err != nil {
		return "", "", err
	}
	return rel, sha, os.WriteFile(file+".sha256", []byte(sha+"\n"), 0o644)
}
