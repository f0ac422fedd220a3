package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nodeprov/nodeprov/stages"
)

// fleetSubcommands are the words `nodeprov fleet` takes first.
var fleetSubcommands = []string{"check"}

// runFleet is `nodeprov fleet check`: the Nodes of a cluster that share a
// machine id or a system UUID. Exit 3 when a group exists, as check exits
// 3 on drift: the fleet is not as it should be, and nothing failed.
func runFleet(ctx context.Context, args []string, s ioSet) int {
	fs := newFlags("fleet", "fleet check --kubeconfig FILE [flags]",
		"  nodeprov fleet check --kubeconfig /etc/nodeprov/fleet.conf\n"+
			"  nodeprov fleet check --kubeconfig ~/.kube/config -o json | jq '.duplicates[]'", s)
	out := addOutput(fs)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig whose identity may get and list nodes (a ClusterRole; a bootstrap token may not)")
	pageSize := fs.Int("page-size", 500, "Nodes per list request")
	timeout := fs.Duration("timeout", time.Minute, "give up listing Nodes after this long (0: never)")
	switch {
	case len(args) > 0 && args[0] == "check":
		args = args[1:]
	case len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help"):
	default:
		fmt.Fprintf(s.err, "fleet: expected a subcommand: %s\n", strings.Join(fleetSubcommands, ", "))
		fs.Usage()
		return exitInvalid
	}
	if _, code, ok := positional(fs, args, 0); !ok {
		return code
	}
	if *kubeconfig == "" || *pageSize < 1 || *timeout < 0 {
		fmt.Fprintln(s.err, "fleet check: --kubeconfig is required, --page-size at least 1, --timeout not negative")
		return exitInvalid
	}
	rep := stages.FleetCheck(ctx, stages.FleetCheckOptions{Kubeconfig: *kubeconfig, PageSize: *pageSize, Timeout: *timeout})
	if out.v == "json" {
		writeJSON(s.out, rep)
	}
	if rep.Error != nil {
		fmt.Fprintf(s.err, "fleet check: %s\n", rep.Error.Message)
		return exitFailure
	}
	if out.v == "text" {
		writeFleetText(s, rep)
	}
	if !rep.OK {
		return exitDrift
	}
	return exitOK
}

// writeFleetText prints one line per group of Nodes sharing an identity.
func writeFleetText(s ioSet, rep *stages.FleetReport) {
	fmt.Fprintf(s.out, "fleet check: %d Nodes at %s\n", rep.Nodes, rep.Server)
	for _, g := range rep.Duplicates {
		what := "machine id"
		if g.Field == stages.FleetSystemUUID {
			what = "system UUID"
		}
		fmt.Fprintf(s.out, "  duplicate %s %s: %d Nodes: %s\n", what, g.Value, len(g.Nodes), strings.Join(g.Nodes, ", "))
	}
	switch n := len(rep.Duplicates); n {
	case 0:
		fmt.Fprintln(s.out, "fleet check: no two Nodes share a machine id or a system UUID")
	case 1:
		fmt.Fprintln(s.out, "fleet check: 1 group of Nodes shares an identity")
	default:
		fmt.Fprintf(s.out, "fleet check: %d groups of Nodes share an identity\n", n)
	}
}
