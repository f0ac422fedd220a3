package kube

import (
	"cmp"
	"slices"
	"strings"
)

// Identity fields a Node reports that must be unique across a fleet.
const (
	// FieldMachineID is status.nodeInfo.machineID: a cloned image that
	// kept its id gives every clone the same one (colliding DHCP DUIDs,
	// journal and CNI peer names).
	FieldMachineID = "machineID"
	// FieldSystemUUID is status.nodeInfo.systemUUID: kubeadm requires it
	// unique; VMs cloned with their firmware UUID share it.
	FieldSystemUUID = "systemUUID"
)

// Group is a set of Nodes that report the same value of one identity
// field.
type Group struct {
	Field string   `json:"field"`
	Value string   `json:"value"`
	Nodes []string `json:"nodes"`
}

// Duplicates groups the Nodes that share a machine id or a system UUID,
// ignoring empty values (a Node whose kubelet has not reported yet). Values
// are compared in lower case: DMI UUIDs come in either. Groups are sorted
// by field, then value; names within a group by name.
func Duplicates(nodes []Node) []Group {
	var groups []Group
	for _, field := range []string{FieldMachineID, FieldSystemUUID} {
		byValue := map[string][]string{}
		for _, n := range nodes {
			v := n.MachineID
			if field == FieldSystemUUID {
				v = n.SystemUUID
			}
			if v = strings.ToLower(strings.TrimSpace(v)); v != "" {
				byValue[v] = append(byValue[v], n.Name)
			}
		}
		for v, names := range byValue {
			if len(names) > 1 {
				slices.Sort(names)
				groups = append(groups, Group{Field: field, Value: v, Nodes: names})
			}
		}
	}
	slices.SortFunc(groups, func(a, b Group) int {
		return cmp.Or(cmp.Compare(a.Field, b.Field), cmp.Compare(a.Value, b.Value))
	})
	return groups
}

// Others returns the names of the Nodes other than self that report the
// machine id id (compared in lower case).
func Others(nodes []Node, self, id string) []string {
	var out []string
	for _, n := range nodes {
		if n.Name != self && strings.EqualFold(strings.TrimSpace(n.MachineID), id) {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return out
}
