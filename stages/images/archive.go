package images

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Names returns the image names an archive holds, as `ctr images import`
// names them: the RepoTags of a docker archive's manifest.json (docker
// save, skopeo docker-archive), or the io.containerd.image.name (else a
// full org.opencontainers.image.ref.name) annotations of an OCI archive's
// index.json. The archive may be gzip-compressed. An archive that names no
// image is an error: nothing could tell whether it is imported.
func Names(r io.Reader) ([]string, error) {
	br := bufio.NewReader(r)
	if head, _ := br.Peek(2); len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		z, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("image archive: %w", err)
		}
		defer z.Close()
		r = z
	} else {
		r = br
	}
	tr := tar.NewReader(r)
	var names []string
	seen := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("image archive: %w", err)
		}
		switch strings.TrimPrefix(h.Name, "./") {
		case "manifest.json":
			seen = true
			var m []struct{ RepoTags []string }
			if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&m); err != nil {
				return nil, fmt.Errorf("image archive: manifest.json: %w", err)
			}
			for _, e := range m {
				names = append(names, e.RepoTags...)
			}
		case "index.json":
			seen = true
			var idx struct {
				Manifests []struct{ Annotations map[string]string }
			}
			if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&idx); err != nil {
				return nil, fmt.Errorf("image archive: index.json: %w", err)
			}
			for _, m := range idx.Manifests {
				switch ref := m.Annotations["org.opencontainers.image.ref.name"]; {
				case m.Annotations["io.containerd.image.name"] != "":
					names = append(names, m.Annotations["io.containerd.image.name"])
				case strings.ContainsAny(ref, "/:"):
					names = append(names, ref)
				}
			}
		}
	}
	switch {
	case !seen:
		return nil, errors.New("image archive: neither manifest.json (docker save) nor index.json (OCI) found")
	case len(names) == 0:
		return nil, errors.New("image archive: names no image (a docker archive needs RepoTags; an OCI archive an io.containerd.image.name or full org.opencontainers.image.ref.name annotation)")
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}
