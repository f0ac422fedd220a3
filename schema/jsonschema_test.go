package schema

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// validatorScript validates YAML files against the schema with an
// independent JSON Schema implementation (python3-jsonschema, draft
// 2020-12), printing one JSON object per file: its errors as
// "path: message" lines, the path dotted as in nodeprov's diagnostics.
const validatorScript = `
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
v = jsonschema.Draft202012Validator(schema)
for name in sys.argv[2:]:
    doc = yaml.safe_load(open(name))
    errs = []
    for e in v.iter_errors(doc):
        path = ".".join(str(p) for p in e.absolute_path)
        errs.append(path + ": " + e.message)
    print(json.dumps({"file": name, "errors": sorted(errs)}))
`

// validateWithPython runs validatorScript over files.
func validateWithPython(t *testing.T, files ...string) map[string][]string {
	t.Helper()
	if err := exec.Command("python3", "-c", "import yaml, jsonschema").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("python3 with yaml and jsonschema is needed (make test installs python3-yaml and python3-jsonschema): %v", err)
		}
		t.Skipf("python3 with yaml and jsonschema is not installed (Debian: python3-yaml python3-jsonschema): %v", err)
	}
	out, err := exec.Command("python3", append([]string{"-c", validatorScript, "nodeprov.schema.json"}, files...)...).Output()
	if err != nil {
		t.Fatalf("python3 jsonschema: %v", err)
	}
	res := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r struct {
			File   string   `json:"file"`
			Errors []string `json:"errors"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		res[r.File] = r.Errors
	}
	return res
}

// TestIndependentValidatorFlagsWhatValidateFlags: an editor that checks
// specs against the schema sees the mistakes `nodeprov validate` reports —
// all of broken.yaml's but the duplicate key, which YAML tools report
// before any schema is applied — and accepts every example.
func TestIndependentValidatorFlagsWhatValidateFlags(t *testing.T) {
	examples, _ := filepath.Glob("../examples/*.yaml")
	mistakes := filepath.Join(t.TempDir(), "mistakes.yaml")
	if err := os.WriteFile(mistakes, []byte(`apiVersion: nodeprov/v1alpha1
kind: Node
metadata: {name: Bad_Name}
kernel:
  sysctl: {Net.ipv4.ip_forward: "1"}
containerd:
  sandboxImage: "not a valid ref!!"
  runtimes:
    kata: {type: io.containerd.kata.v2, overhead: {cpu: 1.5GB, memory: -1}, nodeSelector: {"Example.com/zone": "-a"}}
units:
  - {name: containerd}
machineID: {forbidden: [not-hex]}
downloads:
  - {url: "ftp://example.com/x", sha512: abc, path: /x}
components:
  runc: {version: 1.3.0, sha256: {amd64: short}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	broken := "../examples/testdata/broken.yaml"
	got := validateWithPython(t, append([]string{broken, mistakes}, examples...)...)
	for _, f := range examples {
		if errs := got[f]; len(errs) > 0 {
			t.Errorf("%s: the schema rejects an example that validates:\n%s", f, strings.Join(errs, "\n"))
		}
	}
	for file, want := range map[string][]string{
		broken: {"downloads.0.sha256: ", "files.0.mode: ", "files.0: Additional properties are not allowed ('contnets'", "kernel.modules.1: "},
		mistakes: {"components.runc.sha256.amd64: ", "containerd.sandboxImage: ", "downloads.0.sha512: ", "downloads.0.url: ",
			"containerd.runtimes.kata.overhead.cpu: ", "containerd.runtimes.kata.overhead.memory: ",
			"containerd.runtimes.kata.nodeSelector: 'Example.com/zone' does not match", "containerd.runtimes.kata.nodeSelector.Example.com/zone: ",
			"kernel.sysctl: 'Net.ipv4.ip_forward' does not match", "machineID.forbidden.0: ", "metadata.name: ", "units.0.name: "},
	} {
		errs := got[file]
		for _, w := range want {
			if !slices.ContainsFunc(errs, func(e string) bool { return strings.HasPrefix(e, w) }) {
				t.Errorf("%s: no error starting %q; got:\n%s", filepath.Base(file), w, strings.Join(errs, "\n"))
			}
		}
		if len(errs) != len(want) {
			t.Errorf("%s: %d errors, want %d:\n%s", filepath.Base(file), len(errs), len(want), strings.Join(errs, "\n"))
		}
	}
}
