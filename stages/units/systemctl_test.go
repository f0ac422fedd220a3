package units

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeprov/nodeprov/spec"

	"github.com/nodeprov/nodeprov/stages/host/treetest"
)

// TestOfflineMatchesSystemctl applies the same enable, mask, disable and
// unmask steps to two copies of a root, once with the stage offline and
// once with the real `systemctl --root`, and compares the trees exactly.
// The root has merged /usr (/lib -> usr/lib) like a Debian 12 image.
func TestOfflineMatchesSystemctl(t *testing.T) {
	systemctl, err := exec.LookPath("systemctl")
	if err != nil {
		t.Skip("systemctl is not installed (make deps installs the systemd package)")
	}
	unitK := "[Service]\nExecStart=/usr/bin/k\n[Install]\nWantedBy=sockets.target\nAlias=kk.service\n"
	unitN := "[Service]\nExecStart=/usr/bin/n %i\n[Install]\nWantedBy=multi-user.target getty.target\n"
	fx := fixture{
		files: map[string]string{
			"/usr/lib/systemd/system/l.service":  unitL,
			"/usr/lib/systemd/system/k.service":  unitK,
			"/usr/lib/systemd/system/n@.service": unitN,
			"/usr/lib/systemd/system/s.timer":    "[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n",
		},
		links: map[string]string{"/lib": "usr/lib"},
	}
	// The unit files the stage writes from the spec; systemctl's root gets
	// them before it enables.
	written := map[string]string{"/etc/systemd/system/a.service": unitA, "/etc/systemd/system/t@.service": unitT}
	steps := []struct {
		name      string
		units     []spec.Unit
		systemctl [][]string
	}{
		{
			name: "enable",
			units: []spec.Unit{
				{Name: "a.service", Contents: unitA, Enabled: boolp(true)},
				{Name: "t@.service", Contents: unitT, Enabled: boolp(true)},
				{Name: "t@x.service", Enabled: boolp(true)},
				{Name: "n@y.service", Enabled: boolp(true)},
				{Name: "l.service", Enabled: boolp(true)},
				{Name: "k.service", Enabled: boolp(true)},
				{Name: "s.timer", Enabled: boolp(true)},
			},
			systemctl: [][]string{{"enable", "a.service", "t@.service", "t@x.service", "n@y.service", "l.service", "k.service", "s.timer"}},
		},
		{
			name:      "mask",
			units:     []spec.Unit{{Name: "k.service", Masked: true}, {Name: "nothere.service", Masked: true}},
			systemctl: [][]string{{"mask", "k.service", "nothere.service"}},
		},
		{
			name: "disable",
			units: []spec.Unit{
				{Name: "a.service", Contents: unitA, Enabled: boolp(false)},
				{Name: "t@.service", Contents: unitT, Enabled: boolp(false)},
				{Name: "l.service", Enabled: boolp(false)},
			},
			systemctl: [][]string{{"disable", "a.service", "t@.service", "l.service"}},
		},
		{
			name:      "unmask and enable again",
			units:     []spec.Unit{{Name: "k.service", Enabled: boolp(true)}, {Name: "l.service", Enabled: boolp(true)}},
			systemctl: [][]string{{"unmask", "k.service"}, {"enable", "k.service", "l.service"}},
		},
	}

	ours, ourDir := newRoot(t)
	theirDir := t.TempDir()
	fx.make(t, ourDir)
	fx.make(t, theirDir)
	for p, data := range written {
		writeFile(t, theirDir, p, data)
	}
	for _, st := range steps {
		env := newEnv(ours, &spec.Node{Units: st.units}, false, "apply")
		actions, err := Stage{}.Plan(context.Background(), env)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if err := apply(t, env, actions); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		var log strings.Builder
		for _, args := range st.systemctl {
			out, err := exec.Command(systemctl, append([]string{"--root=" + theirDir}, args...)...).CombinedOutput()
			log.Write(out)
			if err != nil {
				t.Fatalf("%s: systemctl %s: %v\n%s", st.name, strings.Join(args, " "), err, out)
			}
		}
		// Everything under /etc: directories with their mode, links with
		// their target, files with their mode and digest.
		got := treetest.Take(t, filepath.Join(ourDir, "etc"))
		want := treetest.Take(t, filepath.Join(theirDir, "etc"))
		if d := treetest.Diff(want, got); len(d) > 0 {
			t.Fatalf("%s: nodeprov's tree differs from systemctl's:\n  %s\nsystemctl said:\n%s",
				st.name, strings.Join(d, "\n  "), log.String())
		}
	}
}
