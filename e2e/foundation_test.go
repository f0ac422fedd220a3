package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestValidateReportsEveryMistake(t *testing.T) {
	r := runNodeprov(t, "", "validate", "../examples/testdata/broken.yaml")
	if r.code != 2 {
		t.Fatalf("want exit 2:\n%s", r)
	}
	want := []string{
		"../examples/testdata/broken.yaml:5:22: kernel.modules[1]: invalid module name",
		"../examples/testdata/broken.yaml:8:5: kernel.sysctl: duplicate key",
		"../examples/testdata/broken.yaml:11:11: files[0].mode: file mode must be a quoted octal string",
		"../examples/testdata/broken.yaml:12:5: files[0]: unknown key \"contnets\"",
		"../examples/testdata/broken.yaml:15:13: downloads[0].sha256: invalid digest",
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("missing diagnostic %q in:\n%s", w, r.stderr)
		}
	}
	// Each diagnostic is followed by its source line and a caret.
	if !strings.Contains(r.stderr, "   11 |     mode: 0644\n      |           ^\n") {
		t.Errorf("no source line with caret:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "validate: 5 problems in ../examples/testdata/broken.yaml") {
		t.Errorf("no summary line:\n%s", r.stderr)
	}

	j := runNodeprov(t, "", "validate", "-o", "json", "../examples/testdata/broken.yaml")
	rep := parseReport(t, j.stdout)
	if j.code != 2 || rep.OK || len(rep.Diagnostics) != 5 || rep.Error.Class != "invalid-spec" {
		t.Errorf("json validate: exit %d, %+v", j.code, rep)
	}
	if d := rep.Diagnostics[2]; d.Line != 11 || d.Column != 11 || d.Path != "files[0].mode" {
		t.Errorf("json diagnostic position: %+v", d)
	}
}

func TestValidateExamples(t *testing.T) {
	files, _ := filepath.Glob("../examples/*.yaml")
	if len(files) < 6 {
		t.Fatalf("expected the example specs, found %v", files)
	}
	for _, f := range files {
		if r := runNodeprov(t, "", "validate", f); r.code != 0 {
			t.Errorf("%s:\n%s", f, r)
		}
	}
}

func TestSpecFromStdin(t *testing.T) {
	r := runNodeprov(t, "apiVersion: nodeprov/v1alpha1\nkind: Node\nkernel: {modules: [\"bad name\"]}\n", "validate", "-")
	if r.code != 2 || !strings.Contains(r.stderr, "<stdin>:3:20: kernel.modules[0]: invalid module name") {
		t.Errorf("stdin diagnostics:\n%s", r)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"apply"}, {"plan", "--output", "yaml", "x.yaml"}, {"apply", "--stages", "kernal", "../examples/demo.yaml", "--root", t.TempDir()}} {
		if r := runNodeprov(t, "", args...); r.code != 2 {
			t.Errorf("nodeprov %v: want exit 2\n%s", args, r)
		}
	}
	r := runNodeprov(t, "", "apply", "--help")
	if r.code != 0 || !strings.Contains(r.stderr, "Example:") || !strings.Contains(r.stderr, "-root") {
		t.Errorf("apply --help:\n%s", r)
	}
}

func TestSchemaCommand(t *testing.T) {
	r := runNodeprov(t, "", "schema")
	want, err := os.ReadFile("../schema/nodeprov.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if r.code != 0 || r.stdout != string(want) {
		t.Errorf("nodeprov schema differs from schema/nodeprov.schema.json (exit %d)", r.code)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Errorf("schema is not JSON: %v", err)
	}
}

// TestApplyReapplyCheckRepair is the core promise: apply converges, a second
// apply changes nothing, check sees no drift; a hand edit is drift that
// check names (exit 3) and apply repairs.
func TestApplyReapplyCheckRepair(t *testing.T) {
	root := sandbox(t)
	spec := "../examples/demo.yaml"
	first := runNodeprov(t, "", "apply", "--root", root, "-o", "json", spec)
	rep := parseReport(t, first.stdout)
	if first.code != 0 || !rep.OK || rep.Changed == 0 || rep.Live {
		t.Fatalf("first apply: %s", first)
	}
	second := runNodeprov(t, "", "apply", "--root", root, "-o", "json", spec)
	rep = parseReport(t, second.stdout)
	if second.code != 0 || rep.Changed != 0 {
		t.Fatalf("second apply changed %d:\n%s", rep.Changed, second)
	}
	for res, st := range rep.statuses() {
		if st != "unchanged" && st != "deferred" {
			t.Errorf("second apply: %s is %s", res, st)
		}
	}
	if r := runNodeprov(t, "", "check", "--root", root, spec); r.code != 0 {
		t.Fatalf("check after apply:\n%s", r)
	}

	conf := filepath.Join(root, "etc/crictl.yaml")
	if err := os.WriteFile(conf, []byte("runtime-endpoint: unix:///elsewhere.sock\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	drift := runNodeprov(t, "", "check", "--root", root, spec)
	if drift.code != 3 || !strings.Contains(drift.stdout, "~ file /etc/crictl.yaml: contents [drift]") ||
		!strings.Contains(drift.stdout, "-runtime-endpoint: unix:///elsewhere.sock") {
		t.Fatalf("check after a hand edit: want exit 3 naming the file with a diff:\n%s", drift)
	}
	repair := runNodeprov(t, "", "apply", "--root", root, spec)
	if repair.code != 0 || !strings.Contains(repair.stdout, "~ file /etc/crictl.yaml: contents [changed") {
		t.Fatalf("repair:\n%s", repair)
	}
	if r := runNodeprov(t, "", "check", "--root", root, spec); r.code != 0 {
		t.Errorf("check after repair:\n%s", r)
	}
	var last struct {
		OK         bool   `json:"ok"`
		SpecDigest string `json:"specDigest"`
	}
	b, err := os.ReadFile(filepath.Join(root, "var/lib/nodeprov/last-run.json"))
	if err != nil || json.Unmarshal(b, &last) != nil || !last.OK || !strings.HasPrefix(last.SpecDigest, "sha256:") {
		t.Errorf("last-run.json: %v %s", err, b)
	}
}

// TestPlanShowsDefaultsAndChangesNothing: plan --expanded shows applied
// defaults; plan itself writes nothing but the run lock.
func TestPlanShowsDefaultsAndChangesNothing(t *testing.T) {
	root := sandbox(t)
	exp := runNodeprov(t, "", "plan", "--expanded", "../examples/demo.yaml")
	if exp.code != 0 || !strings.Contains(exp.stdout, "owner: root:root") || !strings.Contains(exp.stdout, `mode: "0644"`) {
		t.Errorf("plan --expanded lacks defaults:\n%s", exp)
	}
	plan := runNodeprov(t, "", "plan", "--root", root, "../examples/demo.yaml")
	if plan.code != 0 || !strings.Contains(plan.stdout, "+ file /etc/motd: 38 bytes, mode 0644, owner 0:0 [pending]") {
		t.Errorf("plan output:\n%s", plan)
	}
	if !strings.Contains(plan.stdout, "+This node is provisioned by nodeprov.") {
		t.Errorf("plan shows no diff of new contents:\n%s", plan.stdout)
	}
	var written []string
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if info != nil && !info.IsDir() && !strings.HasSuffix(p, "/run/nodeprov.lock") {
			written = append(written, p)
		}
		return nil
	})
	if len(written) > 0 {
		t.Errorf("plan wrote %v", written)
	}
}

func TestSymlinkPlantedOutOfRoot(t *testing.T) {
	root := sandbox(t)
	outside := filepath.Join(t.TempDir(), "elsewhere")
	os.Mkdir(outside, 0o755)
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	if err := os.Symlink(outside, filepath.Join(root, "etc/sysctl.d")); err != nil {
		t.Fatal(err)
	}
	r := runNodeprov(t, "", "apply", "--root", root, "../examples/demo.yaml")
	if r.code != 1 {
		t.Fatalf("want exit 1:\n%s", r)
	}
	want := fmt.Sprintf("/etc/sysctl.d is a symlink to %s, which does not exist inside root %s", outside, root)
	if !strings.Contains(r.stdout, want) {
		t.Errorf("error does not explain the symlink (want %q):\n%s", want, r)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("nodeprov wrote outside the root: %v", entries)
	}
}

// TestConcurrentRunWaitsForLock holds the run lock and checks that a second
// run says it is waiting and gives up after --lock-timeout, then succeeds
// once the lock is free.
func TestConcurrentRunWaitsForLock(t *testing.T) {
	root := sandbox(t)
	os.MkdirAll(filepath.Join(root, "run"), 0o755)
	f, err := os.OpenFile(filepath.Join(root, "run/nodeprov.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "pid %d\n", os.Getpid())

	r := runNodeprov(t, "", "apply", "--root", root, "--lock-timeout", "300ms", "-o", "json", "../examples/demo.yaml")
	rep := parseReport(t, r.stdout)
	if r.code != 1 || rep.Error == nil || rep.Error.Class != "lock" || !strings.Contains(rep.Error.Message, fmt.Sprintf("held by pid %d", os.Getpid())) {
		t.Fatalf("want a lock failure naming the holder:\n%s", r)
	}
	if !strings.Contains(r.stderr, "waiting for another nodeprov run to finish") {
		t.Errorf("no waiting message:\n%s", r.stderr)
	}

	cmd := nodeprovCommand(nil, "apply", "--root", root, "--lock-timeout", "30s", "../examples/demo.yaml")
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("waiting run failed after the lock was released: %v\n%s", err, out)
	}
}

// TestKernelInNetworkNamespace applies net.* sysctls live inside a fresh
// network namespace, where they are real and private: the values change
// there, the host's do not, and a second apply changes nothing.
func TestKernelInNetworkNamespace(t *testing.T) {
	requireRoot(t)
	root := sandbox(t)
	spec := writeSpec(t, `apiVersion: nodeprov/v1alpha1
kind: Node
kernel:
  modules: [overlay, br_netfilter]
  sysctl:
    net.ipv4.ip_forward: "1"
    net.core.somaxconn: 2048
    net.ipv4.ip_local_port_range: "20000 40000"
    net.bridge.bridge-nf-call-iptables: "1"
`)
	keys := []string{"net/ipv4/ip_forward", "net/core/somaxconn", "net/ipv4/ip_local_port_range"}
	hostBefore := readProc(t, keys)
	out := t.TempDir()
	script := fmt.Sprintf(`set -e
%[1]s apply --live yes --stages kernel --root %[2]s -o json %[3]s > %[4]s/first.json
%[1]s apply --live yes --stages kernel --root %[2]s -o json %[3]s > %[4]s/second.json
for k in %[5]s; do tr '\t' ' ' < /proc/sys/$k; done > %[4]s/values
`, nodeprov, root, spec, out, strings.Join(keys, " "))
	r := runCmd(t, "", "unshare", "-n", "--", "sh", "-c", script)
	if r.code != 0 {
		t.Fatalf("unshare -n apply:\n%s", r)
	}
	first := parseReport(t, readFile(t, out+"/first.json"))
	if !first.OK || !first.Live {
		t.Fatalf("first apply in netns: %+v", first)
	}
	st := first.statuses()
	for _, res := range []string{"sysctl net.ipv4.ip_forward", "sysctl net.core.somaxconn", "sysctl net.ipv4.ip_local_port_range"} {
		if st[res] != "changed" {
			t.Errorf("%s: %s, want changed", res, st[res])
		}
	}
	for _, m := range []string{"module overlay", "module br_netfilter"} {
		if st[m] != "unchanged" {
			t.Errorf("%s: %s, want unchanged (builtin)", m, st[m])
		}
	}
	second := parseReport(t, readFile(t, out+"/second.json"))
	if !second.OK || second.Changed != 0 {
		t.Errorf("second apply in netns changed %d: %+v", second.Changed, second.statuses())
	}
	if got := readFile(t, out+"/values"); got != "1\n2048\n20000 40000\n" {
		t.Errorf("values inside the namespace:\n%q", got)
	}
	if after := readProc(t, keys); after != hostBefore {
		t.Errorf("host sysctls changed:\nbefore %q\nafter  %q", hostBefore, after)
	}
}

// TestKernelRefusalInNetworkNamespace: a value the kernel refuses and a key
// it does not have are clear errors naming the key, and neither reaches
// /etc/sysctl.d.
func TestKernelRefusalInNetworkNamespace(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct{ sysctl, want string }{
		{`net.core.somaxconn: "lots"`, `apply failed: kernel: sysctl net.core.somaxconn: kernel refused value "lots"`},
		{`net.ipv4.no_such_knob: "1"`, `apply failed: kernel: sysctl net.ipv4.no_such_knob: no such key`},
	} {
		root := sandbox(t)
		spec := writeSpec(t, "apiVersion: nodeprov/v1alpha1\nkind: Node\nkernel:\n  sysctl:\n    "+tc.sysctl+"\n")
		r := runCmd(t, "", "unshare", "-n", "--", nodeprov, "apply", "--live", "yes", "--stages", "kernel", "--root", root, spec)
		if r.code != 1 || !strings.Contains(r.stdout, tc.want) {
			t.Errorf("%s: want exit 1 with %q:\n%s", tc.sysctl, tc.want, r)
		}
		if _, err := os.Stat(filepath.Join(root, "etc/sysctl.d/99-nodeprov.conf")); err == nil {
			t.Errorf("%s: refused value was persisted", tc.sysctl)
		}
	}
}

func readProc(t *testing.T, keys []string) string {
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(readFile(t, "/proc/sys/"+k))
	}
	return regexp.MustCompile(`\s+`).ReplaceAllString(b.String(), " ")
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSysinfoOnThisMachine: the probes see this machine as FACTS.md
// describes it — no module support is builtin-only (a pass), cgroup v1
// hybrid, kernel config read from /proc/config.gz.
func TestSysinfoOnThisMachine(t *testing.T) {
	if _, err := os.Stat("/proc/modules"); err == nil {
		t.Skip("this kernel has module support; the test describes the CI machine, which has none")
	}
	r := runNodeprov(t, "", "sysinfo", "-o", "json")
	var rep struct {
		OK     bool `json:"ok"`
		Probes []struct {
			Name, Status, Message string
			Required              bool
		} `json:"probes"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("sysinfo -o json: %v\n%s", err, r)
	}
	got := map[string]string{}
	for _, p := range rep.Probes {
		got[p.Name] = p.Status + ": " + p.Message
	}
	for name, want := range map[string]string{
		"kernel.modules":                        "pass: kernel has no module support: all modules builtin",
		"cgroups.version":                       "warn: cgroup v1 hybrid",
		"kernel.config":                         "pass: read /proc/config.gz",
		"kernel.config.CONFIG_OVERLAY_FS":       "pass: CONFIG_OVERLAY_FS=y builtin",
		"kernel.config.CONFIG_BRIDGE_NETFILTER": "pass: CONFIG_BRIDGE_NETFILTER=y builtin",
	} {
		if !strings.HasPrefix(got[name], want) {
			t.Errorf("%s = %q, want prefix %q", name, got[name], want)
		}
	}
	if r.code != 0 || !rep.OK {
		t.Errorf("sysinfo failed on this machine:\n%s", r)
	}
}
