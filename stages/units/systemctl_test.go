package units

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nodeprov/nodeprov/spec"
)

// tree lists everything under dir/etc: directories with their mode,
// symlinks with their target, regular files with their mode and digest.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(dir, "etc"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out = append(out, fmt.Sprintf("/%s -> %s", rel, target))
		case d.IsDir():
			out = append(out, fmt.Sprintf("/%s/ %o", rel, info.Mode().Perm()))
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out = append(out, fmt.Sprintf("/%s %o %x", rel, info.Mode().Perm(), sha256.Sum256(data)))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

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
		got, want := tree(t, ourDir), tree(t, theirDir)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: trees differ\nnodeprov:\n  %s\nsystemctl:\n  %s\nsystemctl said:\n%s",
				st.name, strings.Join(got, "\n  "), strings.Join(want, "\n  "), log.String())
		}
	}
}
