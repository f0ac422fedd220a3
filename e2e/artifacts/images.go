package artifacts

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// busyboxApplets are the commands the busybox images provide.
var busyboxApplets = []string{"sh", "ip", "cat", "echo", "hostname", "sleep", "ls", "wget", "uname"}

// WriteBusyboxImage writes an OCI image layout (oci-layout, index.json,
// blobs) to dir holding one image tagged tag: a single layer with Debian's
// static busybox and its applets, and a config whose entrypoint is
// entrypoint. skopeo (oci:DIR:TAG) copies it into a registry, which then
// serves it as it would the upstream image; with entrypoint sleep it
// stands in for the pause image.
func WriteBusyboxImage(dir, tag string, entrypoint []string) error {
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return fmt.Errorf("busybox-static is not installed: %w", err)
	}
	var layer bytes.Buffer
	diff := sha256.New()
	gz := gzip.NewWriter(&layer)
	tw := tar.NewWriter(io.MultiWriter(gz, diff))
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
			return err
		}
		if h.Name == "bin/busybox" {
			if _, err := tw.Write(busybox); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}

	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return err
	}
	blob := func(data []byte) (map[string]any, error) {
		sum := fmt.Sprintf("%x", sha256.Sum256(data))
		err := os.WriteFile(filepath.Join(blobs, sum), data, 0o644)
		return map[string]any{"digest": "sha256:" + sum, "size": len(data)}, err
	}
	descriptor := func(mediaType string, v any) (map[string]any, error) {
		data, ok := v.([]byte)
		if !ok {
			var err error
			if data, err = json.Marshal(v); err != nil {
				return nil, err
			}
		}
		d, err := blob(data)
		d["mediaType"] = mediaType
		return d, err
	}
	layerDesc, err := descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer.Bytes())
	if err != nil {
		return err
	}
	configDesc, err := descriptor("application/vnd.oci.image.config.v1+json", map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Entrypoint": entrypoint, "Env": []string{"PATH=/bin"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{fmt.Sprintf("sha256:%x", diff.Sum(nil))}},
	})
	if err != nil {
		return err
	}
	const manifestType = "application/vnd.oci.image.manifest.v1+json"
	manifestDesc, err := descriptor(manifestType, map[string]any{
		"schemaVersion": 2, "mediaType": manifestType, "config": configDesc, "layers": []any{layerDesc},
	})
	if err != nil {
		return err
	}
	manifestDesc["annotations"] = map[string]string{"org.opencontainers.image.ref.name": tag}
	index, err := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{manifestDesc}})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), index, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}
