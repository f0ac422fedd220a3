package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	art "github.com/nodeprov/nodeprov/e2e/artifacts"
)

// Helpers of the CRI tests: OCI images built from Debian's busybox-static,
// and crictl built from its Go module and served release-shaped.

// busyboxApplets are the commands the images' containers use.
var busyboxApplets = []string{"sh", "ip", "cat", "echo", "hostname", "sleep", "ls", "wget"}

// ociImage writes an OCI image layout (oci-layout, index.json, blobs) to
// dir with one image tagged tag: a single layer holding busybox and its
// applets, and a config whose entrypoint is entrypoint. skopeo copies it
// into the test registry as a registry would serve the upstream image.
func ociImage(t *testing.T, dir, tag string, entrypoint []string) {
	t.Helper()
	var layer bytes.Buffer
	diff := sha256.New()
	gz := gzip.NewWriter(&layer)
	tw := tar.NewWriter(io.MultiWriter(gz, diff))
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static is not installed (make test installs it): %v", err)
	}
	entries := []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
		{Name: "proc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "sys/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "dev/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(busybox))},
	}
	for _, a := range busyboxApplets {
		entries = append(entries, &tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	}
	for _, h := range entries {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Name == "bin/busybox" {
			tw.Write(busybox)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	gz.Close()

	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	blob := func(data []byte) (string, int64) {
		sum := fmt.Sprintf("%x", sha256.Sum256(data))
		if err := os.WriteFile(filepath.Join(blobs, sum), data, 0o644); err != nil {
			t.Fatal(err)
		}
		return "sha256:" + sum, int64(len(data))
	}
	layerDigest, layerSize := blob(layer.Bytes())
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Entrypoint": entrypoint, "Env": []string{"PATH=/bin"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{fmt.Sprintf("sha256:%x", diff.Sum(nil))}},
	})
	configDigest, configSize := blob(config)
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": configDigest, "size": configSize},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layerDigest, "size": layerSize}},
	})
	manifestDigest, manifestSize := blob(manifest)
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"manifests": []any{map[string]any{
			"mediaType":   "application/vnd.oci.image.manifest.v1+json",
			"digest":      manifestDigest,
			"size":        manifestSize,
			"annotations": map[string]string{"org.opencontainers.image.ref.name": tag},
		}},
	})
	for name, data := range map[string][]byte{"index.json": index, "oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// crictlVersion is the cri-tools release built for the tests (the newest
// the module proxy serves, shared/FACTS.md).
const crictlVersion = "1.37.0"

// crictlRelease builds crictl from the cri-tools module (once, into the e2e
// cache), packs it as upstream does (crictl-v<v>-linux-amd64.tar.gz with
// the one member crictl, and a .sha256 file holding the bare hash) and
// serves that directory on loopback. It returns the release directory's
// URL and the tarball's sha256, for a spec's components.crictl.
func crictlRelease(t *testing.T) (baseURL, sha string) {
	t.Helper()
	bin := filepath.Join(cachedBuild(t, "crictl-"+crictlVersion, func(dir string) error {
		out, err := exec.Command(filepath.Join(dir, "crictl"), "--version").Output()
		if err != nil {
			return err
		}
		if !strings.Contains(string(out), crictlVersion) {
			return fmt.Errorf("crictl --version says %q", out)
		}
		return nil
	}, func(ctx context.Context, out string, log io.Writer) error {
		err := buildModuleMain(ctx, filepath.Join(out, "src"), "sigs.k8s.io/cri-tools", "v"+crictlVersion,
			"sigs.k8s.io/cri-tools/cmd/crictl", filepath.Join(out, "crictl"), log,
			"sigs.k8s.io/cri-tools/pkg/version.Version=v"+crictlVersion)
		os.RemoveAll(filepath.Join(out, "src"))
		return err
	}), "crictl")

	dir := filepath.Join(t.TempDir(), "cri-tools", "v"+crictlVersion)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var tgz bytes.Buffer
	gz := gzip.NewWriter(&tgz)
	tw := tar.NewWriter(gz)
	tw.WriteHeader(&tar.Header{Name: "crictl", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data))})
	tw.Write(data)
	tw.Close()
	gz.Close()
	file := fmt.Sprintf("crictl-v%s-linux-amd64.tar.gz", crictlVersion)
	sha = fmt.Sprintf("%x", sha256.Sum256(tgz.Bytes()))
	if err := os.WriteFile(filepath.Join(dir, file), tgz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, file+".sha256"), []byte(sha+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := art.Serve(filepath.Dir(filepath.Dir(dir)), art.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv.URL + "/cri-tools/v" + crictlVersion, sha
}
