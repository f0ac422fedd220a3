package stages

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/nodeprov/nodeprov/"

// imports returns the module-internal packages the non-test files of the
// package in dir import, relative to the module ("stages/host"), and every
// import path, for the rules on third-party imports.
func imports(t *testing.T, dir string) (internal, all []string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		parsed, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range parsed.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if !slices.Contains(all, p) {
				all = append(all, p)
			}
			if rel, ok := strings.CutPrefix(p, module); ok && !slices.Contains(internal, rel) {
				internal = append(internal, rel)
			}
		}
	}
	return internal, all
}

// TestImportRules keeps the architecture's dependency rules true: no stage
// package imports another stage package, only the shared ones (host, plan,
// archive, textdiff, cri, kube); plan imports neither fetch nor archive; kube
// imports no nodeprov package (the files it needs are read by its callers
// through host); cmd/nodeprov
// imports nodeprov only through stages, spec and schema, and nothing
// outside the standard library.
func TestImportRules(t *testing.T) {
	shared := []string{"stages/host", "stages/plan", "stages/archive", "stages/textdiff", "stages/cri", "stages/kube"}
	dirs, err := filepath.Glob("*")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range dirs {
		if st, err := os.Stat(d); err != nil || !st.IsDir() || d == "testdata" {
			continue
		}
		n++
		internal, _ := imports(t, d)
		for _, p := range internal {
			if strings.HasPrefix(p, "stages/") && !slices.Contains(shared, p) {
				t.Errorf("stages/%s imports %s: a stage package may import only %s", d, p, strings.Join(shared, ", "))
			}
		}
	}
	if n < 8 {
		t.Fatalf("found %d stage packages; is the test running in stages/?", n)
	}
	plan, _ := imports(t, "plan")
	for _, p := range plan {
		if p == "fetch" || p == "stages/archive" {
			t.Errorf("stages/plan imports %s", p)
		}
	}
	if kube, _ := imports(t, "kube"); len(kube) != 0 {
		t.Errorf("stages/kube imports %v: it may import no nodeprov package", kube)
	}
	_, cmd := imports(t, "../cmd/nodeprov")
	for _, p := range cmd {
		rel, internal := strings.CutPrefix(p, module)
		switch {
		case internal && (rel == "stages" || rel == "schema" || rel == "spec" || strings.HasPrefix(rel, "spec/")):
		case internal:
			t.Errorf("cmd/nodeprov imports %s: it may import only stages, spec and schema", p)
		case strings.Contains(strings.SplitN(p, "/", 2)[0], "."):
			t.Errorf("cmd/nodeprov imports %s: policy and machine access belong in stages", p)
		}
	}
}
