package main

import (
	"fmt"
	"path"
	"strings"

	"github.com/nodeprov/nodeprov/e2e/artifacts"
)

// nodeSpec is the node spec the benchmark applies: the components the tree
// serves (runc verified by its OpenPGP signatures), the padding payloads as
// plain downloads with checksum files, and mirrors that send the upstream
// URLs to the loopback server. Nothing is pinned and no lock file sits next
// to it, so every digest comes from a checksum file, as in the recipe. The
// kernel section makes nodeprov persist the same modules-load.d and
// sysctl.d files the recipe and the playbook write (offline on a sandbox
// root: files only); containerd's config.toml comes from the component.
func nodeSpec(t *tree, serverURL string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: nodeprov/v1alpha1
kind: Node
metadata: {name: bench}
%[1]skernel:
  modules: [%[2]s]
  sysctl:
%[3]s`, artifacts.ComponentsYAML(serverURL, t.Keyring, true), strings.Join(kernelModules, ", "), sysctlYAML())
	if len(t.payloads) > 0 {
		b.WriteString("downloads:\n")
	}
	for _, p := range t.payloads {
		u := artifacts.UpstreamURL(p)
		fmt.Fprintf(&b, "  - url: %s\n    checksum: {url: %s.sha256}\n    path: /opt/nodeprov-bench/%s\n    mode: \"0644\"\n", u, u, path.Base(p))
	}
	return b.String()
}

func sysctlYAML() string {
	var b strings.Builder
	for _, kv := range kernelSysctl {
		fmt.Fprintf(&b, "    %s: %q\n", kv[0], kv[1])
	}
	return b.String()
}
