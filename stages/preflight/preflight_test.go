package preflight

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// env returns a plan.Env over the fake's root and kernel.
func (f *fake) env(live bool, ignore ...string) *plan.Env {
	f.t.Helper()
	root, err := host.OpenRoot(f.root)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { root.Close() })
	return &plan.Env{
		Spec:    &spec.Node{Preflight: spec.Preflight{Ignore: ignore}},
		Root:    root,
		Live:    live,
		Kernel:  f.kernel(),
		Changes: plan.NewChangeSet(),
		Mode:    "plan",
	}
}

func TestStageImplementsPlanStage(t *testing.T) {
	var s plan.Stage = Stage{}
	if s.Name() != "preflight" {
		t.Errorf("Name() = %q", s.Name())
	}
}

func TestStageActions(t *testing.T) {
	f := newFake(t)
	env := f.env(true)
	actions, err := Stage{Host: f.host}.Plan(context.Background(), env)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	rep := f.sysinfo(true)
	if len(actions) != len(rep.Probes) {
		t.Fatalf("%d actions for %d probes", len(actions), len(rep.Probes))
	}
	for i, a := range actions {
		r := rep.Probes[i]
		if a.Resource != "probe "+r.Name || a.Op != plan.OpNone || a.Run != nil || len(a.Paths) > 0 {
			t.Errorf("action %d = %+v; want a no-op for probe %s", i, a, r.Name)
		}
		if want := string(r.Status) + ": " + r.Message; a.Detail != want {
			t.Errorf("action %s detail = %q, want %q", a.Resource, a.Detail, want)
		}
	}
	if w := env.Warnings(); len(w) != 0 {
		t.Errorf("healthy v2 host produced warnings: %q", w)
	}
}

func TestStageIgnore(t *testing.T) {
	// A host with a required option missing (OVERLAY_FS), an advisory one
	// missing (NETFILTER_XT_MATCH_IPVS), no mount binary and swap on.
	broken := func(f *fake) {
		f.hostGzip("proc/config.gz", fullConfig(map[string]string{"OVERLAY_FS": "n", "NETFILTER_XT_MATCH_IPVS": ""}))
		f.hostFile("proc/swaps", "Filename Type Size Used Priority\n/swapfile file 1048576 0 -2\n")
	}
	tests := []struct {
		name   string
		ignore []string
		noBin  bool
		// errProbes are the probes the error must name; none means Plan
		// succeeds.
		errProbes []string
		// warnings are substrings, one per expected warning, in order.
		warnings []string
	}{
		{
			name:      "required failure stops the run",
			errProbes: []string{"kernel.config.CONFIG_OVERLAY_FS"},
		},
		{
			name:      "several failures are named together",
			noBin:     true,
			errProbes: []string{"kernel.config.CONFIG_OVERLAY_FS", "binary.mount"},
		},
		{
			name:   "exact name downgrades to a warning",
			ignore: []string{"kernel.config.CONFIG_OVERLAY_FS"},
			warnings: []string{
				"preflight kernel.config.CONFIG_OVERLAY_FS failed (ignored by preflight.ignore): CONFIG_OVERLAY_FS missing",
				"preflight kernel.config.CONFIG_NETFILTER_XT_MATCH_IPVS failed (advisory)",
				"preflight swap: on: /swapfile",
			},
		},
		{
			name:   "prefix covers every option and silences advisory ones",
			ignore: []string{"kernel.config"},
			warnings: []string{
				"preflight kernel.config.CONFIG_OVERLAY_FS failed (ignored",
				"preflight swap: on",
			},
		},
		{
			name:      "prefix matches whole components only",
			ignore:    []string{"kernel.conf", "binary.mo"},
			noBin:     true,
			errProbes: []string{"kernel.config.CONFIG_OVERLAY_FS", "binary.mount"},
		},
		{
			name:   "binary prefix and all",
			ignore: []string{"all"},
			noBin:  true,
			warnings: []string{
				"CONFIG_OVERLAY_FS failed (ignored",
				"binary.mount failed (ignored by preflight.ignore): mount not found",
			},
		},
		{
			name:   "unknown entry warns",
			ignore: []string{"kernel.config.CONFIG_OVERLAY_FS", "swap", "kernel.confg"},
			warnings: []string{
				`preflight.ignore: "kernel.confg" names no probe`,
				"CONFIG_OVERLAY_FS failed (ignored",
				"CONFIG_NETFILTER_XT_MATCH_IPVS failed (advisory)",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			broken(f)
			if tt.noBin {
				f.rootFile("usr/bin/mount", "not executable")
			}
			env := f.env(true, tt.ignore...)
			actions, err := Stage{Host: f.host}.Plan(context.Background(), env)
			if len(tt.errProbes) > 0 {
				var fe *FailedError
				if !errors.As(err, &fe) {
					t.Fatalf("Plan error = %v, want a *FailedError", err)
				}
				var got []string
				for _, p := range fe.Probes {
					got = append(got, p.Name)
				}
				if !slices.Equal(got, tt.errProbes) {
					t.Errorf("failed probes = %v, want %v", got, tt.errProbes)
				}
				hint := "preflight.ignore: [" + strings.Join(tt.errProbes, ", ") + "]"
				if !strings.Contains(err.Error(), hint) {
					t.Errorf("error %q does not say how to ignore (%s)", err, hint)
				}
				for _, name := range tt.errProbes {
					if !strings.Contains(err.Error(), name+": ") {
						t.Errorf("error %q does not explain %s", err, name)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			w := env.Warnings()
			if len(w) != len(tt.warnings) {
				t.Fatalf("warnings = %q, want %d matching %q", w, len(tt.warnings), tt.warnings)
			}
			for i := range w {
				if !strings.Contains(w[i], tt.warnings[i]) {
					t.Errorf("warning %d = %q, want it to contain %q", i, w[i], tt.warnings[i])
				}
			}
			for _, a := range actions {
				if a.Resource == "probe kernel.config.CONFIG_OVERLAY_FS" && !strings.HasSuffix(a.Detail, "(ignored)") {
					t.Errorf("ignored failure detail = %q", a.Detail)
				}
			}
		})
	}
}

func TestFailedErrorSingle(t *testing.T) {
	err := &FailedError{Probes: []ProbeResult{{Name: "binary.mount", Required: true, Status: StatusFail, Message: "mount not found"}}}
	want := "required probe binary.mount: mount not found; to go on anyway, add it to the spec: preflight.ignore: [binary.mount]"
	if err.Error() != want {
		t.Errorf("Error() = %q\nwant      %q", err.Error(), want)
	}
}

func TestStageOffline(t *testing.T) {
	f := newFake(t)
	// Live state that would fail if probed: nothing mounted, no config.
	f.remove("proc")
	f.rootFile("etc/machine-id", "uninitialized\n")
	env := f.env(false)
	actions, err := Stage{Host: f.host}.Plan(context.Background(), env)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	ops := map[string]plan.Op{}
	for _, a := range actions {
		ops[strings.TrimPrefix(a.Resource, "probe ")] = a.Op
		if a.Op == plan.OpDeferred && !strings.Contains(a.Detail, "deferred to first boot") {
			t.Errorf("%s: detail %q", a.Resource, a.Detail)
		}
	}
	for _, name := range []string{"proc.mounted", "kernel.release", "kernel.modules", "kernel.config", "cgroups.version", "swap"} {
		if ops[name] != plan.OpDeferred {
			t.Errorf("%s op = %q, want deferred", name, ops[name])
		}
	}
	for _, name := range []string{"kernel.config.CONFIG_OVERLAY_FS", "cgroups.controllers"} {
		if _, ok := ops[name]; ok {
			t.Errorf("%s ran under a deferred parent", name)
		}
	}
	for _, name := range []string{"binary.mount", "binary.umount", "binary.iptables-or-nft", "network.localhost", "disk.free", "machine-id"} {
		if ops[name] != plan.OpNone {
			t.Errorf("%s op = %q, want none (file probes run offline)", name, ops[name])
		}
	}
	// modprobe is unknown offline: missing only warns.
	if w := env.Warnings(); len(w) != 1 || !strings.Contains(w[0], "binary.modprobe") || !strings.Contains(w[0], "first boot") {
		t.Errorf("warnings = %q, want one about modprobe", w)
	}

	// File probes still run offline; a required failure on an image root
	// warns (the image build may install what is missing; first boot
	// checks again) instead of stopping the build.
	f.rootFile("etc/hosts", "127.0.1.1 image\n")
	env2 := f.env(false)
	if _, err = (Stage{Host: f.host}).Plan(context.Background(), env2); err != nil {
		t.Errorf("offline Plan with a broken /etc/hosts = %v, want warnings only", err)
	}
	found := false
	for _, w := range env2.Warnings() {
		found = found || strings.Contains(w, "network.localhost failed on the image root (checked again at first boot)")
	}
	if !found {
		t.Errorf("no warning about network.localhost: %q", env2.Warnings())
	}
	// Live, the same failure stops the run.
	_, err = Stage{Host: f.host}.Plan(context.Background(), f.env(true))
	var fe *FailedError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "network.localhost: no localhost entry") {
		t.Errorf("live Plan with a broken /etc/hosts = %v", err)
	}
}

func TestStageCanceled(t *testing.T) {
	f := newFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (Stage{Host: f.host}).Plan(ctx, f.env(true)); !errors.Is(err, context.Canceled) {
		t.Errorf("Plan with a canceled context = %v", err)
	}
}

func TestProbeNames(t *testing.T) {
	names := ProbeNames()
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			t.Errorf("duplicate probe name %s", n)
		}
		seen[n] = true
	}
	for _, n := range []string{"kernel.release", "cgroups.version", "cgroups.controllers", "kernel.config.CONFIG_OVERLAY_FS",
		"kernel.modules", "binary.mount", "binary.umount", "binary.modprobe", "binary.iptables-or-nft",
		"network.localhost", "proc.mounted", "disk.free", "swap", "machine-id"} {
		if !seen[n] {
			t.Errorf("probe %s missing from %v", n, names)
		}
	}
}
