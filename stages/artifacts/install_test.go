package artifacts

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/archive"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// installEnv is an environment for root and the run state of a run whose
// fetch stage expanded arts (and fetched nothing yet).
func installEnv(root *host.Root, arts []spec.Artifact) (*plan.Env, *run) {
	r := &run{arts: arts, fetched: map[string]fetched{}}
	r.once.Do(func() {}) // expanded already
	return &plan.Env{Root: root, Changes: plan.NewChangeSet()}, r
}

// planInstall plans the install stage for root and arts with nothing
// fetched: what the install record alone decides.
func planInstall(root *host.Root, arts []spec.Artifact) ([]*plan.Action, error) {
	env, r := installEnv(root, arts)
	return r.planInstall(context.Background(), env)
}

// cached writes data as a verified cache file and records it as fetched.
func cached(t *testing.T, r *run, name string, data []byte) {
	t.Helper()
	sum := sha256.Sum256(data)
	hexSum := hex.EncodeToString(sum[:])
	p := filepath.Join(t.TempDir(), hexSum)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r.setFetched(name, fetched{Path: p, SHA256: hexSum, Digest: "sha256:" + hexSum, Trust: "pinned"})
}

func tgz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	tw := tar.NewWriter(zw)
	for _, name := range []string{"bin/containerd", "bin/ctr", "bridge", "loopback"} {
		data, ok := files[name]
		if !ok {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(data))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return b.Bytes()
}

// runActions applies actions the way the runner does: parallel neighbours
// concurrently, the rest in order.
func runActions(t *testing.T, actions []*plan.Action) {
	t.Helper()
	for i := 0; i < len(actions); {
		n := 1
		for actions[i].Parallel && i+n < len(actions) && actions[i+n].Parallel {
			n++
		}
		var wg sync.WaitGroup
		errs := make([]error, n)
		for j, a := range actions[i : i+n] {
			if a.Run == nil || !a.Op.Changes() {
				continue
			}
			wg.Add(1)
			go func() { defer wg.Done(); errs[j] = a.Run(context.Background()) }()
		}
		wg.Wait()
		for j, err := range errs {
			if err != nil {
				t.Fatalf("%s: %v", actions[i+j].Resource, err)
			}
		}
		i += n
	}
}

func TestPlanInstallsAndConverges(t *testing.T) {
	dir := t.TempDir()
	root, err := host.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	arts := []spec.Artifact{
		{Name: "containerd", URL: "https://x/containerd.tgz", Upstream: "https://x/containerd.tgz",
			Install: spec.Install{Files: map[string]string{"bin/containerd": "/usr/local/bin/containerd", "bin/ctr": "/usr/local/bin/ctr"}}},
		{Name: "cni", URL: "https://x/cni.tgz", Upstream: "https://x/cni.tgz",
			Install: spec.Install{To: "/opt/cni/bin", Include: []string{"bridge", "loopback"}}},
		{Name: "runc", URL: "https://x/runc.amd64", Upstream: "https://x/runc.amd64",
			Install: spec.Install{Path: "/usr/local/sbin/runc", Mode: 0o755}},
		{Name: "downloads[0]", URL: "https://x/bridge", Upstream: "https://x/bridge",
			Install: spec.Install{Path: "/opt/cni/bin/bridge-extra", Mode: 0o755}},
	}
	planAll := func() ([]*plan.Action, error) {
		env, r := installEnv(root, arts)
		cached(t, r, "containerd", tgz(t, map[string]string{"bin/containerd": "containerd", "bin/ctr": "ctr"}))
		cached(t, r, "cni", tgz(t, map[string]string{"bridge": "bridge", "loopback": "loopback"}))
		cached(t, r, "runc", []byte("runc"))
		cached(t, r, "downloads[0]", []byte("extra"))
		return r.planInstall(context.Background(), env)
	}

	actions, err := planAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(actions) != len(arts)+1 {
		t.Fatalf("got %d actions, want one per artifact and the record", len(actions))
	}
	wantParallel := map[string]bool{
		"install containerd":   true,
		"install cni":          true, // its members, not /opt/cni/bin, are its targets
		"install runc":         true,
		"install downloads[0]": true,
	}
	for _, a := range actions[:len(arts)] {
		if a.Op != plan.OpCreate && a.Op != plan.OpUpdate {
			t.Errorf("%s: op %s on an empty root", a.Resource, a.Op)
		}
		if a.Parallel != wantParallel[a.Resource] {
			t.Errorf("%s: parallel %v, want %v", a.Resource, a.Parallel, wantParallel[a.Resource])
		}
	}
	if actions[len(arts)].Parallel {
		t.Error("the install record must run after every install")
	}
	runActions(t, actions)

	for p, want := range map[string]string{
		"usr/local/bin/containerd":        "containerd",
		"usr/local/bin/ctr":               "ctr",
		"opt/cni/bin/bridge":              "bridge",
		"opt/cni/bin/loopback":            "loopback",
		"usr/local/sbin/runc":             "runc",
		"opt/cni/bin/bridge-extra":        "extra",
		"var/lib/nodeprov/installed.json": "",
	} {
		data, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
		} else if want != "" && string(data) != want {
			t.Errorf("%s holds %q, want %q", p, data, want)
		}
	}

	again, err := planAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range again {
		if a.Op.Changes() {
			t.Errorf("second plan: %s would %s (%s)", a.Resource, a.Op, a.Detail)
		}
	}
}

func TestMarkParallel(t *testing.T) {
	tests := []struct {
		name  string
		paths [][]string
		want  []bool
	}{
		{"disjoint", [][]string{{"/usr/local/bin/containerd", "/usr/local/bin/ctr"}, {"/usr/local/sbin/runc"}}, []bool{true, true}},
		{"same file", [][]string{{"/opt/cni/bin/bridge"}, {"/opt/cni/bin/bridge"}}, []bool{false, false}},
		{"tree holds file", [][]string{{"/opt/cni/bin"}, {"/opt/cni/bin/bridge"}, {"/usr/local/bin/x"}}, []bool{false, false, true}},
		{"prefix is not a parent", [][]string{{"/opt/cni/bin"}, {"/opt/cni/binaries/x"}}, []bool{true, true}},
		{"unchanged (no paths)", [][]string{nil, {"/opt/cni/bin"}}, []bool{true, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var actions []*plan.Action
			for _, p := range tt.paths {
				actions = append(actions, &plan.Action{Paths: p})
			}
			markParallel(actions)
			for i, a := range actions {
				if a.Parallel != tt.want[i] {
					t.Errorf("action %d (%v): parallel %v, want %v", i, a.Paths, a.Parallel, tt.want[i])
				}
			}
		})
	}
}

// TestPlannedMembers: members the fetch stage planned are used as they are
// (the archive is not read again to plan), and the install still checks
// the bytes it writes against them.
func TestPlannedMembers(t *testing.T) {
	dir := t.TempDir()
	root, err := host.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	art := spec.Artifact{Name: "containerd", URL: "https://x/c.tgz", Upstream: "https://x/c.tgz",
		Install: spec.Install{Files: map[string]string{"bin/containerd": "/usr/local/bin/containerd"}}}
	env, r := installEnv(root, []spec.Artifact{art})
	cached(t, r, "containerd", tgz(t, map[string]string{"bin/containerd": "good"}))
	f, _ := r.getFetched("containerd")
	members, err := archive.Plan(bytes.NewReader(tgz(t, map[string]string{"bin/containerd": "good"})), archive.SelectionOf(art.Install), archive.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	f.Members = members
	// The cache file changes after the fetch stage planned it.
	if err := os.WriteFile(f.Path, tgz(t, map[string]string{"bin/containerd": "evil"}), 0o644); err != nil {
		t.Fatal(err)
	}
	r.setFetched("containerd", f)

	actions, err := r.planInstall(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if actions[0].Op != plan.OpCreate && actions[0].Op != plan.OpUpdate {
		t.Fatalf("op %s, want an install", actions[0].Op)
	}
	err = actions[0].Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "changed between the check and the install") {
		t.Fatalf("got %v, want the changed contents refused", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "usr/local/bin/containerd")); !os.IsNotExist(err) {
		t.Errorf("containerd was written: %v", err)
	}
}

// TestClonedRootIsIntact: a file-level copy of an installed root (new
// inodes and, here, new mtimes) needs no download: the files are hashed
// once against the record, and the refreshed record makes the next plan
// hash nothing. A file with the same size but other bytes is not intact.
func TestClonedRootIsIntact(t *testing.T) {
	src := t.TempDir()
	arts := []spec.Artifact{
		{Name: "runc", URL: "https://x/runc.amd64", Upstream: "https://x/runc.amd64",
			Install: spec.Install{Path: "/usr/local/sbin/runc", Mode: 0o755}},
		{Name: "containerd", URL: "https://x/c.tgz", Upstream: "https://x/c.tgz",
			Install: spec.Install{Files: map[string]string{"bin/containerd": "/usr/local/bin/containerd"}}},
	}
	open := func(dir string) *host.Root {
		r, err := host.OpenRoot(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	env, r := installEnv(open(src), arts)
	cached(t, r, "runc", []byte("runc binary"))
	cached(t, r, "containerd", tgz(t, map[string]string{"bin/containerd": "containerd binary"}))
	actions, err := r.planInstall(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	runActions(t, actions)

	clone := filepath.Join(t.TempDir(), "clone")
	if out, err := exec.Command("cp", "-r", src, clone).CombinedOutput(); err != nil { // new inodes and mtimes
		t.Fatalf("cp: %v %s", err, out)
	}
	// Nothing fetched: anything not intact would wait for a download.
	actions, err = planInstall(open(clone), arts)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range actions[:len(arts)] {
		if a.Op.Changes() {
			t.Errorf("clone: %s would %s (%s)", a.Resource, a.Op, a.Detail)
		}
	}
	if rec := actions[len(arts)]; !rec.Op.Changes() {
		t.Error("clone: the install record keeps the source's inodes")
	}
	runActions(t, actions)
	again, err := planInstall(open(clone), arts)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range again {
		if a.Op.Changes() {
			t.Errorf("after the record refresh: %s would %s", a.Resource, a.Op)
		}
	}

	// Same size, other bytes, new mtime: hashed and found changed.
	if err := os.WriteFile(filepath.Join(clone, "usr/local/sbin/runc"), []byte("evil binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	tampered, err := planInstall(open(clone), arts)
	if err != nil {
		t.Fatal(err)
	}
	if a := tampered[0]; a.Resource != "install runc" || !a.Op.Changes() {
		t.Errorf("tampered runc: %s %s, want a reinstall", a.Resource, a.Op)
	}
}
