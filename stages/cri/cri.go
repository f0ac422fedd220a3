// Package cri holds what every CRI nodeprov configures shares, whichever
// serves it (containerd's CRI plugin, or cri-dockerd on top of dockerd):
// the bridge conflist pods are networked with, /etc/crictl.yaml, and the
// kubelet's agreement with both. The containerd and docker stages use it;
// only the one serving the node's CRI (spec.Node.DockerCRI) writes the
// companion files.
package cri

import (
	"encoding/json"
	"path"
	"strings"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/plan"
)

const (
	// CrictlConfig is crictl's configuration file.
	CrictlConfig = "/etc/crictl.yaml"
	// Conflist is the bridge network's file name in the CNI configuration
	// directory, written when cni.network is bridge.
	Conflist = "10-nodeprov-bridge.conflist"
)

// RenderConflist returns the bridge network configuration: a bridge with
// host-local IPAM on the spec's subnet, chained with portmap. Both CRIs
// set up the loopback interface themselves with the loopback plugin from
// the same bin dir.
func RenderConflist(n spec.PodNetwork) ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "nodeprov",
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      "cni0",
				"isGateway":   true,
				"ipMasq":      true,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":   "host-local",
					"ranges": [][]map[string]string{{{"subnet": n.Subnet}}},
					"routes": []map[string]string{{"dst": defaultRoute(n.Subnet)}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

func defaultRoute(subnet string) string {
	if strings.Contains(subnet, ":") {
		return "::/0"
	}
	return "0.0.0.0/0"
}

// RenderCrictl returns /etc/crictl.yaml pointing crictl at endpoint (a
// unix:// URL) for both runtime and images.
func RenderCrictl(endpoint string) []byte {
	return []byte(plan.ManagedHeader +
		"runtime-endpoint: " + endpoint + "\nimage-endpoint: " + endpoint + "\ntimeout: 10\n")
}

// Companions plans the files that belong with the node's CRI: the bridge
// conflist (network bridge) and /etc/crictl.yaml pointing at endpoint. A
// file the spec's files: section declares itself wins.
func Companions(env *plan.Env, network spec.PodNetwork, endpoint string) ([]*plan.Action, error) {
	declared := map[string]bool{}
	for _, f := range env.Spec.Files {
		declared[f.Path] = true
	}
	var actions []*plan.Action
	add := func(resource, p string, data []byte) error {
		if declared[p] {
			return nil
		}
		a, err := plan.PlanFile(env.Root, resource, plan.FileSpec{Path: p, Data: data, Mode: 0o644})
		if err == nil {
			actions = append(actions, a)
		}
		return err
	}
	if network.Network == "bridge" {
		data, err := RenderConflist(network)
		if err != nil {
			return nil, err
		}
		if err := add("cni "+Conflist, path.Join(network.ConfDir, Conflist), data); err != nil {
			return nil, err
		}
	}
	if err := add("crictl "+CrictlConfig, CrictlConfig, RenderCrictl(endpoint)); err != nil {
		return nil, err
	}
	return actions, nil
}
