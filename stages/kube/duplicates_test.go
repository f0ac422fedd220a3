package kube

import (
	"reflect"
	"testing"
)

func TestDuplicates(t *testing.T) {
	const (
		idA = "0123456789abcdef0123456789abcdef"
		idB = "fedcba9876543210fedcba9876543210"
	)
	cases := []struct {
		name  string
		nodes []Node
		want  []Group
	}{
		{name: "none", nodes: []Node{{Name: "a", MachineID: idA, SystemUUID: "u1"}, {Name: "b", MachineID: idB, SystemUUID: "u2"}}},
		{name: "empty values are not a group", nodes: []Node{{Name: "a"}, {Name: "b"}, {Name: "c", MachineID: " "}}},
		{name: "machine id shared by three", nodes: []Node{{Name: "w3", MachineID: idA}, {Name: "w1", MachineID: idA}, {Name: "w2", MachineID: idA}, {Name: "x", MachineID: idB}},
			want: []Group{{Field: FieldMachineID, Value: idA, Nodes: []string{"w1", "w2", "w3"}}}},
		{name: "system UUID in either case, and both fields", nodes: []Node{
			{Name: "b", MachineID: idB, SystemUUID: "EC2A-1"}, {Name: "a", MachineID: idB, SystemUUID: "ec2a-1"},
			{Name: "c", MachineID: idA, SystemUUID: "x"}, {Name: "d", MachineID: idA, SystemUUID: "y"}},
			want: []Group{
				{Field: FieldMachineID, Value: idA, Nodes: []string{"c", "d"}},
				{Field: FieldMachineID, Value: idB, Nodes: []string{"a", "b"}},
				{Field: FieldSystemUUID, Value: "ec2a-1", Nodes: []string{"a", "b"}},
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Duplicates(tc.nodes); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestOthers(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef"
	nodes := []Node{{Name: "self", MachineID: id}, {Name: "z", MachineID: id}, {Name: "y", MachineID: "0123456789ABCDEF0123456789ABCDEF"}, {Name: "n", MachineID: "ffffffffffffffffffffffffffffffff"}}
	if got := Others(nodes, "self", id); !reflect.DeepEqual(got, []string{"y", "z"}) {
		t.Errorf("Others = %v, want [y z]", got)
	}
	if got := Others(nodes[:1], "self", id); got != nil {
		t.Errorf("a host's own Node is not a duplicate: %v", got)
	}
}
