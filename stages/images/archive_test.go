package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"slices"
	"strings"
	"testing"
)

func tarOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, data := range files {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))})
		tw.Write([]byte(data))
	}
	tw.Close()
	return b.Bytes()
}

func gz(data []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// TestNames: the names ctr import gives an archive's images, from a docker
// archive's RepoTags or an OCI index's annotations, compressed or not;
// archives that name nothing, or are not image archives, are errors.
func TestNames(t *testing.T) {
	docker := tarOf(t, map[string]string{
		"manifest.json": `[{"Config":"c.json","RepoTags":["registry.k8s.io/pause:3.10"],"Layers":["l.tar"]},{"RepoTags":["docker.io/library/busybox:1.36"]}]`,
		"c.json":        "{}",
	})
	oci := tarOf(t, map[string]string{
		"oci-layout": `{"imageLayoutVersion":"1.0.0"}`,
		"index.json": `{"schemaVersion":2,"manifests":[{"annotations":{"io.containerd.image.name":"example.com/a:1","org.opencontainers.image.ref.name":"1"}},{"annotations":{"org.opencontainers.image.ref.name":"example.com/b:2"}},{"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}`,
	})
	both := tarOf(t, map[string]string{
		"manifest.json": `[{"RepoTags":["example.com/c:3"]}]`,
		"index.json":    `{"manifests":[{"annotations":{"io.containerd.image.name":"example.com/c:3"}}]}`,
	})
	for _, tc := range []struct {
		name string
		data []byte
		want []string
		err  string
	}{
		{"docker archive", docker, []string{"docker.io/library/busybox:1.36", "registry.k8s.io/pause:3.10"}, ""},
		{"gzip docker archive", gz(docker), []string{"docker.io/library/busybox:1.36", "registry.k8s.io/pause:3.10"}, ""},
		{"OCI archive", oci, []string{"example.com/a:1", "example.com/b:2"}, ""},
		{"both indexes, one name", both, []string{"example.com/c:3"}, ""},
		{"untagged", tarOf(t, map[string]string{"manifest.json": `[{"RepoTags":null}]`}), nil, "names no image"},
		{"no index", tarOf(t, map[string]string{"layer.tar": "x"}), nil, "neither manifest.json"},
		{"not a tar", []byte("plain text, not an archive at all, long enough to read a header from it............................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................"), nil, "image archive"},
	} {
		got, err := Names(bytes.NewReader(tc.data))
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: got %v, %v; want an error containing %q", tc.name, got, err, tc.err)
		case tc.err == "" && (err != nil || !slices.Equal(got, tc.want)):
			t.Errorf("%s: got %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

// TestListWithoutCtr: with no ctr to ask, listing fails at once, naming
// the missing tool, even when apply would wait for containerd to start.
func TestListWithoutCtr(t *testing.T) {
	_, err := list(context.Background(), "/nonexistent/usr/local/bin/ctr", "/run/containerd/containerd.sock", true)
	if err == nil || !strings.Contains(err.Error(), "there is none at /nonexistent/usr/local/bin/ctr") {
		t.Fatalf("got %v, want an error naming the missing ctr", err)
	}
}
