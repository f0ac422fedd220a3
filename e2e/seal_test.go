package e2e

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var validMachineID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// cloneRoot copies an image root, as a cloud copies a golden image.
func cloneRoot(t *testing.T, image string) string {
	t.Helper()
	start := time.Now()
	dst := filepath.Join(t.TempDir(), "root")
	if out, err := exec.Command("cp", "-a", image, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy the image: %v\n%s", err, out)
	}
	t.Logf("cloned the image into %s in %s", dst, time.Since(start).Round(10*time.Millisecond))
	return dst
}

// requestLog records the paths a server was asked for.
type requestLog struct {
	mu   sync.Mutex
	seen []string
}

func (l *requestLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.seen = append(l.seen, r.URL.Path)
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (l *requestLog) paths() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.seen...)
}

// lastReport decodes the last of the JSON reports appended to a file.
func lastReport(t *testing.T, data string) report {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(data))
	var last report
	n := 0
	for {
		var r report
		err := dec.Decode(&r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("first-boot report %d is not JSON: %v\n%s", n+1, err, data)
		}
		last, n = r, n+1
	}
	if n == 0 {
		t.Fatalf("no first-boot report")
	}
	return last
}

// TestSealGoldenImage is the golden-image flow: the image build applies the
// spec offline with the first-boot unit and seals the root; two clones boot
// (at the same time), each gets its own machine-id, the first-boot unit
// provisions it live, containerd runs, and apply passes. A clone that kept
// the image's id is refused under machineID.policy fail and repaired under
// regenerate.
func TestSealGoldenImage(t *testing.T) {
	a := releaseArtifacts(t)
	srv := a.serve(t, nil)
	addr := strings.TrimPrefix(srv.URL, "http://")
	image := newNodeRoot(t)
	spec := nodeSpec(a, srv.URL, nodeSpecOptions{})

	// The image build: nodeprov comes from the apply itself, not from
	// newNodeRoot's copy.
	if err := os.Remove(filepath.Join(image, "usr/local/bin/nodeprov")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(image, "etc/machine-id"))
	if err != nil {
		t.Fatal(err)
	}
	baked := strings.TrimSpace(string(b))
	if !validMachineID.MatchString(baked) {
		t.Fatalf("the base root should carry a baked machine-id, has %q", b)
	}
	start := time.Now()
	r := runNodeprov(t, "", "apply", "--image", "--root", image, "-o", "json", writeSpec(t, spec))
	rep := parseReport(t, r.stdout)
	if r.code != 0 || !rep.OK {
		t.Fatalf("image apply:\n%s", r)
	}
	st := rep.statuses()
	for res, want := range map[string]string{
		"enable nodeprov-firstboot.service": "changed",
		"enable containerd.service":         "changed",
		"start containerd.service":          "deferred",
	} {
		if st[res] != want {
			t.Errorf("image apply: %s is %q, want %s", res, st[res], want)
		}
	}
	for _, p := range []string{"usr/local/bin/nodeprov", "etc/nodeprov/node.yaml", "etc/systemd/system/nodeprov-firstboot.service"} {
		if _, err := os.Stat(filepath.Join(image, p)); err != nil {
			t.Errorf("the image apply did not install /%s: %v", p, err)
		}
	}
	r = runNodeprov(t, "", "seal", "--root", image)
	if r.code != 0 {
		t.Fatalf("seal:\n%s", r)
	}
	t.Logf("image build (apply --image, seal) in %s", time.Since(start).Round(10*time.Millisecond))
	if b, _ := os.ReadFile(filepath.Join(image, "etc/machine-id")); string(b) != "uninitialized\n" {
		t.Errorf("sealed /etc/machine-id is %q, want uninitialized", b)
	}
	if target, err := os.Readlink(filepath.Join(image, "var/lib/dbus/machine-id")); err != nil || target != "/etc/machine-id" {
		t.Errorf("sealed /var/lib/dbus/machine-id: link to %q (%v), want /etc/machine-id", target, err)
	}
	if r := runNodeprov(t, "", "seal", "--root", image); r.code != 0 || !strings.Contains(r.stdout, "nothing changed") {
		t.Errorf("sealing a sealed image:\n%s", r)
	}

	bootGoldenClones(t, a, addr, image, baked)

	t.Run("clone that kept the baked id", func(t *testing.T) {
		root := cloneRoot(t, image)
		if err := os.WriteFile(filepath.Join(root, "etc/machine-id"), []byte(baked+"\n"), 0o444); err != nil {
			t.Fatal(err)
		}
		ns := newNetns(t)
		a.serveIn(t, ns, addr, nil)
		n := bootNode(t, root, bootOptions{ns: ns})
		if id := strings.TrimSpace(n.mustSh(t, "cat /etc/machine-id")); id != baked {
			t.Fatalf("the clone booted with %s, not the baked id %s", id, baked)
		}
		// Its first boot refuses to provision it: the unit runs (no stamp
		// yet) and the apply fails the machine-id check.
		if p := n.unitProps(t, "nodeprov-firstboot.service", "ActiveState", "Result"); p["Result"] == "success" {
			t.Errorf("the first-boot unit succeeded on a clone with the image's id: %v", p)
		}
		if fb := lastReport(t, n.mustSh(t, "cat /var/log/nodeprov-firstboot.json")); fb.OK || fb.Error == nil || !strings.Contains(fb.Error.Message, "machine-id.sealed-clone") {
			t.Errorf("first-boot report on the clone: ok=%v error %+v, want the sealed-clone check", fb.OK, fb.Error)
		}

		r, rep := applyIn(t, n, nodeSpec(a, srv.URL, nodeSpecOptions{machineID: "policy: fail\n"}))
		if r.code != 1 || rep.Error == nil || rep.Error.Stage != "machine-id" || !strings.Contains(rep.Error.Message, "machine-id.sealed-clone") {
			t.Errorf("policy fail on the clone: want exit 1 naming machine-id.sealed-clone:\n%s", r)
		} else {
			t.Logf("policy fail on the clone: %s", rep.Error.Message)
		}
		if id := strings.TrimSpace(n.mustSh(t, "cat /etc/machine-id")); id != baked {
			t.Errorf("policy fail changed the machine-id to %s", id)
		}

		r, rep = applyIn(t, n, nodeSpec(a, srv.URL, nodeSpecOptions{machineID: "policy: regenerate\n"}))
		if r.code != 0 || !rep.OK {
			t.Fatalf("policy regenerate on the clone:\n%s", r)
		}
		if s := rep.statuses()["machine-id /etc/machine-id"]; s != "changed" {
			t.Errorf("regenerate: machine-id action %q, want changed (actions %v)", s, changedActions(rep))
		}
		id := strings.TrimSpace(n.mustSh(t, "cat /etc/machine-id"))
		t.Logf("policy regenerate: machine-id %s -> %s; changed %v", baked, id, changedActions(rep))
		if !validMachineID.MatchString(id) || id == baked {
			t.Errorf("regenerated machine-id %q (baked %s)", id, baked)
		}
		if got := strings.TrimSpace(n.mustSh(t, "readlink /var/lib/dbus/machine-id")); got != "/etc/machine-id" {
			t.Errorf("after regenerate /var/lib/dbus/machine-id links to %q", got)
		}
		r, rep = applyIn(t, n, nodeSpec(a, srv.URL, nodeSpecOptions{machineID: "policy: fail\n"}))
		if r.code != 0 || !rep.OK {
			t.Errorf("policy fail after regenerate:\n%s", r)
		}
		checkContainerdServes(t, n)
	})
}

// bootGoldenClones boots two copies of a sealed golden image at the same
// time, each in a network namespace of its own with the artifact mirror at
// addr (where the image's spec expects it), and checks what every copy of
// a golden image must show: a valid machine-id of its own (neither baked,
// the id the image had before sealing, nor its twin's), the first-boot
// unit run to success with a live report, containerd serving, a second
// apply that changes nothing, and the id kept on disk after poweroff.
func bootGoldenClones(t *testing.T, a *artifacts, addr, image, baked string) {
	t.Helper()
	clones := []string{cloneRoot(t, image), cloneRoot(t, image)}
	var nodes []*node
	var fetched []*requestLog
	for _, root := range clones {
		ns := newNetns(t)
		log := &requestLog{}
		a.serveIn(t, ns, addr, log.wrap)
		fetched = append(fetched, log)
		nodes = append(nodes, startNode(t, root, bootOptions{ns: ns}))
	}
	ids := map[string]string{}
	for i, n := range nodes {
		n.waitRunning(t, 0)
		id := strings.TrimSpace(n.mustSh(t, "cat /etc/machine-id"))
		switch {
		case !validMachineID.MatchString(id):
			t.Errorf("node %s: /etc/machine-id is %q, want 32 lowercase hex digits", n.name, id)
		case id == baked:
			t.Errorf("node %s kept the image's baked machine-id %s", n.name, id)
		case ids[id] != "":
			t.Errorf("nodes %s and %s booted with the same machine-id %s", ids[id], n.name, id)
		}
		ids[id] = n.name
		t.Logf("node %s: machine-id %s", n.name, id)
		if got := strings.TrimSpace(n.mustSh(t, "readlink /var/lib/dbus/machine-id")); got != "/etc/machine-id" {
			t.Errorf("node %s: /var/lib/dbus/machine-id links to %q", n.name, got)
		}

		p := n.unitProps(t, "nodeprov-firstboot.service", "ActiveState", "Result", "ConditionResult")
		if p["ActiveState"] != "active" || p["Result"] != "success" || p["ConditionResult"] != "yes" {
			t.Errorf("node %s: the first-boot unit did not run to success: %v\n%s", n.name, p, n.journal(t, "nodeprov-firstboot.service", 30))
		}
		if r := n.sh(t, "test -e /var/lib/nodeprov/firstboot.done"); r.code != 0 {
			t.Errorf("node %s: no first-boot stamp", n.name)
		}
		fb := lastReport(t, n.mustSh(t, "cat /var/log/nodeprov-firstboot.json"))
		if !fb.OK || !fb.Live {
			t.Errorf("node %s: first-boot report ok=%v live=%v, error %+v", n.name, fb.OK, fb.Live, fb.Error)
		}
		t.Logf("node %s: the first boot changed %v; fetched from the mirror: %v", n.name, changedActions(fb), fetched[i].paths())
		checkContainerdServes(t, n)

		r := n.run(t, "", "nodeprov", "apply", "-o", "json", "/etc/nodeprov/node.yaml")
		if rep := parseReport(t, r.stdout); r.code != 0 || !rep.OK {
			t.Errorf("node %s: apply after first boot:\n%s", n.name, r)
		} else if rep.Changed != 0 {
			t.Errorf("node %s: apply after the first-boot apply changed %v", n.name, changedActions(rep))
		}
	}
	for i, n := range nodes {
		n.poweroff(t)
		// The id the node ran with was committed to its disk: it keeps
		// its identity across reboots.
		b, _ := os.ReadFile(filepath.Join(clones[i], "etc/machine-id"))
		if id := strings.TrimSpace(string(b)); ids[id] != n.name {
			t.Errorf("node %s: /etc/machine-id on disk after poweroff is %q, not the id it ran with", n.name, b)
		}
	}

}
