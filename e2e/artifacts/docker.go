package artifacts

import (
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DockerVersion is the Docker Engine release Debian's docker.io package
// carries (20.10.24+dfsg1-…), packed as Docker's static tarball.
const DockerVersion = "20.10.24"

// CriDockerdVersion is the cri-dockerd release in the fixtures.
const CriDockerdVersion = "0.4.3"

// dockerDebianBinaries are where Debian's docker.io puts the binaries that
// Docker's static tarball has under docker/ (docker-init is a link to
// tini-static; the file it names is packed).
var dockerDebianBinaries = map[string]string{
	"dockerd":      "/usr/sbin/dockerd",
	"docker":       "/usr/bin/docker",
	"docker-init":  "/usr/bin/docker-init",
	"docker-proxy": "/usr/sbin/docker-proxy",
}

// PackDocker lays out Debian's Docker Engine as Docker's static release
// under dir/docker/x86_64/docker-<v>.tgz (members docker/dockerd, docker,
// docker-init, docker-proxy; a release carries containerd and runc too,
// which a node with the managed containerd does not install). Docker
// publishes no checksum file; it returns the directory to use as baseURL
// (relative to dir) and the tarball's sha256 for the spec's pin.
func PackDocker(dir string) (rel, sha string, err error) {
	members := map[string]string{}
	for name, src := range dockerDebianBinaries {
		if members["docker/"+name], err = filepath.EvalSymlinks(src); err != nil {
			return "", "", fmt.Errorf("Debian's docker.io (make test installs it): %w", err)
		}
	}
	rel = "docker"
	file := filepath.Join(dir, rel, "x86_64", "docker-"+DockerVersion+".tgz")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return "", "", err
	}
	if err := writeTarGz(file, members, gzip.BestSpeed); err != nil {
		return "", "", err
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", "", err
	}
	return rel, fmt.Sprintf("%x", sha256.Sum256(data)), nil
}

// Fixture returns the path of a release-shaped test input from the shared
// fixtures ($NODEPROV_FIXTURES, else ../shared/fixtures next to the
// checkout) and its sha256, checked against the .sha256 file beside it
// when there is one. Where neither directory has it, the error names the
// upstream asset to download.
func Fixture(name, upstream string) (file, sha string, err error) {
	var dirs []string
	if d := os.Getenv("NODEPROV_FIXTURES"); d != "" {
		dirs = append(dirs, d)
	} else if wd, err := os.Getwd(); err == nil {
		// Tests run in their package directory; the checkout is above.
		for d := wd; d != filepath.Dir(d); d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				dirs = append(dirs, filepath.Join(filepath.Dir(d), "shared", "fixtures"))
				break
			}
		}
	}
	for _, d := range dirs {
		file = filepath.Join(d, name)
		if _, err := os.Stat(file); err != nil {
			continue
		}
		if sha, err = FileHash(file, sha256.New); err != nil {
			return "", "", err
		}
		if want, err := os.ReadFile(file + ".sha256"); err == nil && !strings.HasPrefix(string(want), sha) {
			return "", "", fmt.Errorf("%s: sha256 %s, but %s.sha256 says %s", file, sha, file, want)
		}
		return file, sha, nil
	}
	return "", "", fmt.Errorf("fixture %s not found in %s: download upstream's release asset %s into $NODEPROV_FIXTURES (or ../shared/fixtures next to the checkout)", name, strings.Join(dirs, ", "), upstream)
}
