package e2e

import (
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	art "github.com/nodeprov/nodeprov/e2e/artifacts"
)

// Versions of the Debian packages the artifacts are built from; the spec
// asks for exactly these, so what gets installed is what runs.
const (
	containerdVersion = art.ContainerdVersion
	runcVersion       = art.RuncVersion
	cniVersion        = art.CNIVersion
	gvisorVersion     = art.GVisorVersion
)

// artifacts is a release-shaped tree (e2e/artifacts): a containerd tarball
// with bin/, runc.amd64 with a clearsigned runc.sha256sum and a detached
// .asc made with a key generated for the tree, the CNI .tgz with .sha256,
// and gVisor's runsc with .sha512.
type artifacts struct {
	dir     string
	keyring string // armored public key of the tree's signing key
	tree    *art.Tree
}

func newArtifacts(tree *art.Tree) *artifacts {
	return &artifacts{dir: tree.Dir, keyring: tree.Keyring, tree: tree}
}

var (
	artifactsOnce sync.Once
	artifactsDir  *artifacts
	artifactsErr  error
)

// releaseArtifacts builds the tree from the distribution's real binaries
// once per test process.
func releaseArtifacts(t *testing.T) *artifacts {
	t.Helper()
	requireRoot(t)
	artifactsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nodeprov-artifacts-")
		if err != nil {
			artifactsErr = err
			return
		}
		var tree *art.Tree
		if tree, artifactsErr = art.Build(dir, art.Options{}); artifactsErr == nil {
			artifactsDir = newArtifacts(tree)
		}
	})
	if artifactsErr != nil {
		t.Fatalf("build release artifacts: %v", artifactsErr)
	}
	return artifactsDir
}

// serve starts a loopback HTTP server over the tree, closed when the test
// ends; wrap, when set, wraps the file server (faults, request counting).
func (a *artifacts) serve(t *testing.T, wrap func(http.Handler) http.Handler) *art.Server {
	t.Helper()
	srv, err := art.Serve(a.dir, art.ServerOptions{Wrap: wrap})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// mirrors returns the spec's mirrors block pointing upstream prefixes at
// the loopback server.
func mirrors(serverURL string) string { return art.MirrorsYAML(serverURL) }

// indent prefixes every line of s.
func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n") + "\n"
}

// fileHash returns the hex digest of a file; copyFile copies one with mode
// 0755, creating the directory.
var (
	fileHash = art.FileHash
	copyFile = art.CopyFile
)
