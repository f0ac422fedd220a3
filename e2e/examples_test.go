package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestExamplesValidateAndPlan: every example validates, expands for both
// architectures, and plans into an empty image root. Planning skips the
// fetch and install stages, which need the examples' upstream release
// hosts to resolve checksum files (the install tests do that part against
// a loopback mirror).
func TestExamplesValidateAndPlan(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(files) < 7 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if r := runNodeprov(t, "", "validate", f); r.code != 0 {
				t.Fatalf("validate: %s", r)
			}
			for _, arch := range []string{"amd64", "arm64"} {
				r := runNodeprov(t, "", "plan", "--expanded", "--arch", arch, "-o", "json", f)
				if r.code != 0 {
					t.Fatalf("plan --expanded --arch %s: %s", arch, r)
				}
				var exp struct {
					Arch      string
					Artifacts []struct{ Name, URL string }
				}
				if err := json.Unmarshal([]byte(r.stdout), &exp); err != nil {
					t.Fatalf("plan --expanded -o json: %v\n%s", err, r.stdout)
				}
				for _, a := range exp.Artifacts {
					other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[arch]
					if strings.Contains(a.URL, other) {
						t.Errorf("%s artifact %s has a %s URL: %s", arch, a.Name, other, a.URL)
					}
				}
			}
			root := sandbox(t)
			r := runNodeprov(t, "", "plan", "--root", root, "-o", "json",
				"--stages", "preflight,machine-id,kernel,files,containerd,docker,units", f)
			if r.code != 0 {
				t.Fatalf("plan: %s", r)
			}
			rep := parseReport(t, r.stdout)
			if len(rep.statuses()) == 0 {
				t.Error("plan reported no actions")
			}
		})
	}
}
