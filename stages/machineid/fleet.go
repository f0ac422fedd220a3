package machineid

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/kube"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// CheckFleetDuplicate: another Node of the cluster already reports this
// host's machine id. Joining would give the cluster two Nodes with one
// identity (colliding DHCP DUIDs, journal and CNI peer names).
const CheckFleetDuplicate = "machine-id.fleet-duplicate"

// FleetResource is the resource name of the fleet check's action.
const FleetResource = "machine-id fleet"

// fleetTimeout bounds the fleet check's API requests: a boot must not hang
// on a control plane that does not answer.
const fleetTimeout = 30 * time.Second

// checkFleet asks the Kubernetes API whether a Node other than this host's
// own reports its machine id, and adds a CheckFleetDuplicate problem to st
// when one does. It returns the action that reports the check. Offline (an
// image root has no id of its own yet) the check is deferred to the live
// apply of first boot; without a valid id there is nothing to compare, and
// the other checks say why.
func checkFleet(ctx context.Context, root *host.Root, live bool, st *Status, f *spec.Fleet) (*plan.Action, error) {
	a := &plan.Action{Resource: FleetResource, Op: plan.OpNone}
	if !live {
		a.Op, a.Detail = plan.OpDeferred, "checked against the Kubernetes API's Nodes at a live apply (first boot): an image has no id of its own yet"
		return a, nil
	}
	if st.ID.Content != ContentValid {
		a.Detail = "skipped: " + IDPath + " holds no valid id to compare"
		return a, nil
	}
	self := f.NodeName
	if self == "" {
		var err error
		if self, err = host.Hostname(); err != nil {
			return nil, fmt.Errorf("machineID.fleet: %w (set machineID.fleet.nodeName)", err)
		}
	}
	nodes, cfg, err := listNodes(ctx, root, f.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("machineID.fleet: %w", err)
	}
	others := kube.Others(nodes, self, st.ID.ID)
	if len(others) == 0 {
		a.Detail = fmt.Sprintf("no other Node of %d reports %s (this host is Node %q; %s)", len(nodes), Abbrev(st.ID.ID), self, cfg.Server)
		return a, nil
	}
	st.add(CheckFleetDuplicate, IDPath, "%s already %s machine id %s (Kubernetes API %s, kubeconfig %s): this host, Node %q, would join as a duplicate; %s",
		nodeNames(others), reportVerb(len(others)), Abbrev(st.ID.ID), cfg.Server, f.Kubeconfig, self,
		"set machineID.policy: regenerate, or give this host a new id (rm /etc/machine-id && systemd-machine-id-setup)")
	a.Detail = fmt.Sprintf("%d other Node(s) of %d report %s", len(others), len(nodes), Abbrev(st.ID.ID))
	return a, nil
}

// listNodes reads the kubeconfig inside the root and lists the Nodes.
func listNodes(ctx context.Context, root *host.Root, kubeconfig string) ([]kube.Node, *kube.Config, error) {
	read := func(p string) ([]byte, error) {
		data, exists, err := root.ReadFile(p)
		if err != nil {
			return nil, err
		}
		if !exists {
			return nil, fmt.Errorf("%s does not exist in %s", p, root.Dir())
		}
		return data, nil
	}
	data, err := read(kubeconfig)
	if err != nil {
		return nil, nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg, err := kube.LoadConfig(kubeconfig, data, read)
	if err != nil {
		return nil, nil, err
	}
	c, err := kube.NewClient(cfg)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, fleetTimeout)
	defer cancel()
	nodes, err := c.ListNodes(ctx, kube.DefaultPageSize)
	return nodes, cfg, err
}

// nodeNames names up to five Nodes: `Node "a"`, `Nodes "a", "b" and 3 more`.
func nodeNames(names []string) string {
	const shown = 5
	quoted := make([]string, 0, shown)
	for i, n := range names {
		if i == shown {
			break
		}
		quoted = append(quoted, fmt.Sprintf("%q", n))
	}
	s := strings.Join(quoted, ", ")
	if len(names) > shown {
		s += fmt.Sprintf(" and %d more", len(names)-shown)
	}
	if len(names) == 1 {
		return "Node " + s
	}
	return "Nodes " + s
}

func reportVerb(n int) string {
	if n == 1 {
		return "reports"
	}
	return "report"
}
