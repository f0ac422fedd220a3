package main

import (
	"fmt"

	"github.com/nodeprov/nodeprov/e2e/artifacts"
)

// tree is the release-shaped tree (e2e/artifacts) the benchmark serves.
type tree struct {
	*artifacts.Tree
	payloads []string // tree paths of the padding payloads
}

// buildTree writes the release-shaped tree into dir: the containerd tarball
// with bin/*, runc.amd64 with a clearsigned runc.sha256sum and a detached
// .asc (a key generated for the tree), the CNI .tgz with .sha256, gVisor's
// runsc with .sha512, all from Debian's binaries, and padding payloads of
// random (incompressible) bytes with .sha256 files, sized so the whole tree
// is about totalBytes.
func buildTree(dir string, totalBytes int64, payloads int) (*tree, error) {
	at, err := artifacts.Build(dir, artifacts.Options{Payloads: payloads, TotalBytes: totalBytes})
	if err != nil {
		return nil, fmt.Errorf("%w (make bench-e2e installs the packages)", err)
	}
	t := &tree{Tree: at}
	for _, a := range at.Artifacts {
		if isPayload(a) {
			t.payloads = append(t.payloads, a.Path)
		}
	}
	return t, nil
}

func isPayload(a artifacts.Artifact) bool {
	switch a.Name {
	case artifacts.Containerd, artifacts.Runc, artifacts.CNI, artifacts.Runsc:
		return false
	}
	return true
}

// label is an artifact's name in the tables.
func label(a artifacts.Artifact) string {
	switch a.Name {
	case artifacts.Containerd:
		return "containerd tar.gz"
	case artifacts.Runc:
		return "runc.amd64"
	case artifacts.CNI:
		return "CNI plugins .tgz"
	case artifacts.Runsc:
		return "gVisor runsc"
	}
	return a.Name + " (random)"
}
