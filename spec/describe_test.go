package spec

import (
	"strings"
	"testing"
)

func TestDescribeArtifacts(t *testing.T) {
	doc, err := Load("t.yaml", []byte(header+`
components:
  runc: {version: 1.3.0}
  cni: {version: 1.7.1, plugins: [bridge]}
mirrors:
  - {prefix: "https://github.com/", to: "https://mirror.internal/gh/"}
downloads:
  - url: https://example.com/tool
    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    path: /usr/local/bin/tool
`))
	if err != nil {
		t.Fatal(err)
	}
	arts, err := Expand(doc.Spec, "arm64")
	if err != nil {
		t.Fatal(err)
	}
	got := DescribeArtifacts(arts, "arm64")
	for _, want := range []string{
		"# Components and downloads expand to these artifacts (arm64):",
		"#     url: https://mirror.internal/gh/opencontainers/runc/releases/download/v1.3.0/runc.arm64\n",
		"#     upstream: https://github.com/opencontainers/runc/releases/download/v1.3.0/runc.arm64\n",
		"#     install: /usr/local/sbin/runc mode 0755\n",
		"#       ./bridge -> /opt/cni/bin/bridge\n",
		"#     sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 (pinned)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(got), "\n") {
		if !strings.HasPrefix(line, "#") {
			t.Errorf("line %q is not a comment: the output must stay a loadable spec", line)
		}
	}
}
