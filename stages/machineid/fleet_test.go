package machineid

import (
	"context"
	"strings"
	"testing"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// The fleet check's answers from a real API server are proven in
// e2e/fleet_test.go; these cases are the ones decided before a request.

// fleetAction returns the fleet check's action among actions.
func fleetAction(t *testing.T, actions []*plan.Action) *plan.Action {
	t.Helper()
	for _, a := range actions {
		if a.Resource == FleetResource {
			return a
		}
	}
	t.Fatalf("no %s action among %d", FleetResource, len(actions))
	return nil
}

func TestFleetOfflineIsDeferred(t *testing.T) {
	for _, policy := range []string{PolicyFail, PolicyWarn, PolicyRegenerate} {
		root, _ := makeRoot(t, tree{files: map[string]string{IDPath: "uninitialized\n"}})
		env := newEnv(root, false, policy)
		// No kubeconfig exists: offline, nothing may read it.
		env.Spec.MachineID.Fleet = &spec.Fleet{Kubeconfig: "/etc/nodeprov/fleet.conf"}
		actions, err := Stage{}.Plan(context.Background(), env)
		if err != nil {
			t.Fatalf("%s: %v", policy, err)
		}
		if a := fleetAction(t, actions); a.Op != plan.OpDeferred || !strings.Contains(a.Detail, "at a live apply (first boot)") {
			t.Errorf("%s: %s %q, want deferred to first boot", policy, a.Op, a.Detail)
		}
	}
}

func TestFleetWithoutValidIDIsSkipped(t *testing.T) {
	root, _ := makeRoot(t, tree{files: map[string]string{IDPath: "uninitialized\n"}})
	env := newEnv(root, true, PolicyRegenerate)
	env.Spec.MachineID.Fleet = &spec.Fleet{Kubeconfig: "/etc/nodeprov/fleet.conf"}
	actions, err := Stage{}.Plan(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if a := fleetAction(t, actions); a.Op != plan.OpNone || !strings.Contains(a.Detail, "skipped: /etc/machine-id holds no valid id") {
		t.Errorf("%s %q", a.Op, a.Detail)
	}
}

func TestFleetKubeconfigErrors(t *testing.T) {
	cases := []struct {
		name, kubeconfig, want string
	}{
		{"missing", "", "machineID.fleet: kubeconfig: /etc/nodeprov/fleet.conf does not exist in "},
		{"no server", "current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {}}]\nusers: [{name: u, user: {token: t0ps3cret}}]\n",
			"machineID.fleet: /etc/nodeprov/fleet.conf:3:31: clusters[0].cluster.server: not set"},
		{"missing CA file", "current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', certificate-authority: pki/ca.crt}}]\nusers: [{name: u, user: {token: t0ps3cret}}]\n",
			"/etc/nodeprov/fleet.conf:3:86: clusters[0].cluster.certificate-authority: /etc/nodeprov/pki/ca.crt does not exist in "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{IDPath: idA + "\n"}
			if tc.kubeconfig != "" {
				files["/etc/nodeprov/fleet.conf"] = tc.kubeconfig
			}
			for _, policy := range []string{PolicyFail, PolicyRegenerate, PolicyWarn} {
				root, _ := makeRoot(t, tree{files: files})
				env := newEnv(root, true, policy)
				env.Spec.MachineID.Fleet = &spec.Fleet{Kubeconfig: "/etc/nodeprov/fleet.conf", NodeName: "worker-1"}
				actions, err := Stage{}.Plan(context.Background(), env)
				if policy != PolicyWarn {
					if err == nil || !strings.Contains(err.Error(), tc.want) {
						t.Errorf("%s: error %v, want it to contain %q", policy, err, tc.want)
					}
					continue
				}
				if err != nil {
					t.Fatalf("warn: %v", err)
				}
				a := fleetAction(t, actions)
				warnings := strings.Join(env.Warnings(), "\n")
				if !strings.Contains(a.Detail, "not checked: machineID.fleet: ") || !strings.Contains(a.Detail, tc.want) || !strings.Contains(warnings, tc.want) {
					t.Errorf("warn: action %q, warnings %q, want %q", a.Detail, warnings, tc.want)
				}
				if strings.Contains(a.Detail+warnings, "t0ps3cret") {
					t.Errorf("the token shows: %s %s", a.Detail, warnings)
				}
			}
		})
	}
}
