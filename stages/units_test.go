package stages

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/units"
)

func TestAllFollowsOrder(t *testing.T) {
	var names []string
	for _, s := range All(Options{}) {
		names = append(names, s.Name())
	}
	if !slices.Equal(names, Order) {
		t.Errorf("All() = %q, want the design's order %q", names, Order)
	}
	st := All(Options{NoBlock: true})[slices.Index(Order, "units")].(units.Stage)
	if !st.NoBlock || st.FirstBoot != nil {
		t.Errorf("units stage from Options{NoBlock: true}: %+v", st)
	}
}

const unitsSpec = `apiVersion: nodeprov/v1alpha1
kind: Node
units:
  - name: hello.service
    enabled: true
    state: started
    contents: |
      [Service]
      ExecStart=/bin/sleep infinity
      [Install]
      WantedBy=multi-user.target
`

// TestUnitsOffline runs the units stage through Execute on an image root:
// files and links written, start deferred, no warning that units are not
// applied; a second apply changes nothing.
func TestUnitsOffline(t *testing.T) {
	root := t.TempDir()
	live := false
	run := func(mode Mode, only ...string) *Report {
		return Execute(context.Background(), Options{Mode: mode, Doc: load(t, unitsSpec), RootDir: root, Live: &live, Stages: only})
	}
	r := run(ModeApply, "units")
	if !r.OK {
		t.Fatal(r.Error)
	}
	if len(r.Warnings) > 0 {
		t.Errorf("warnings: %q", r.Warnings)
	}
	got := statuses(r)
	for res, want := range map[string]Status{"unit hello.service": StatusChanged, "enable hello.service": StatusChanged, "start hello.service": StatusDeferred} {
		if got[res] != want {
			t.Errorf("%s = %q, want %q", res, got[res], want)
		}
	}
	if target, err := os.Readlink(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/hello.service")); err != nil || target != "/etc/systemd/system/hello.service" {
		t.Errorf("enable link: %q %v", target, err)
	}
	if r := run(ModeCheck, "units"); !r.OK || r.Drift {
		t.Errorf("check after apply: ok=%v drift=%v %+v", r.OK, r.Drift, statuses(r))
	}
	if r := run(ModeApply, "files"); !slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.HasPrefix(w, "units: not applied") }) {
		t.Errorf("a run without the units stage does not warn: %q", r.Warnings)
	}
}

// TestFirstBootThroughExecute installs the first-boot unit with the spec's
// bytes and the run's pins as the lock file, each pin with its trust (a
// same-origin entry must stay same-origin, or first boot would count it as
// a pin under --require-pinned).
func TestFirstBootThroughExecute(t *testing.T) {
	root := t.TempDir()
	live := false
	doc := load(t, unitsSpec)
	const pinned = "https://example.com/a.tgz"
	pins := spec.NewLock()
	pins.Pins[pinned] = "sha256:" + strings.Repeat("ab", 32)
	pins.Trust[pinned] = spec.TrustSameOrigin
	run := func(mode Mode, only ...string) *Report {
		return Execute(context.Background(), Options{Mode: mode, Doc: doc, RootDir: root, Live: &live, Stages: only, Pins: pins, FirstBoot: true})
	}
	if r := run(ModePlan, "units"); !r.OK || statuses(r)["firstboot binary "+units.FirstBootBinary] != StatusPending {
		t.Fatalf("plan: %+v %+v", r.Error, statuses(r))
	}
	r := run(ModeApply, "units")
	if !r.OK {
		t.Fatal(r.Error)
	}
	got := statuses(r)
	for _, res := range []string{"firstboot binary " + units.FirstBootBinary, "firstboot spec " + units.FirstBootSpec,
		"firstboot lock " + units.FirstBootLock, "unit " + units.FirstBootUnitName, "enable " + units.FirstBootUnitName} {
		if got[res] != StatusChanged {
			t.Errorf("%s = %q, want changed", res, got[res])
		}
	}
	if data, _ := os.ReadFile(filepath.Join(root, units.FirstBootSpec)); string(data) != unitsSpec {
		t.Errorf("installed spec = %q", data)
	}
	lock, err := os.ReadFile(filepath.Join(root, units.FirstBootLock))
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := spec.ParseLock("nodeprov.lock", lock)
	if d, trust := parsed.Pin(pinned); err != nil || len(parsed.Pins) != 1 || d != pins.Pins[pinned] || trust != spec.TrustSameOrigin {
		t.Errorf("installed lock %q: %v %v", lock, parsed, err)
	}
	if r := run(ModeCheck, "units"); !r.OK || r.Drift {
		t.Errorf("check after apply: ok=%v drift=%v %+v", r.OK, r.Drift, statuses(r))
	}
	if r := run(ModeApply, "files"); !slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.HasPrefix(w, "the first-boot unit: not applied") }) {
		t.Errorf("--stages without units does not warn about the first-boot unit: %q", r.Warnings)
	}
}
