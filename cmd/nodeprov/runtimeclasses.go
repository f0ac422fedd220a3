package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/nodeprov/nodeprov/spec"
)

func runRuntimeClasses(ctx context.Context, args []string, s ioSet) int {
	fs := newFlags("runtimeclasses", "runtimeclasses [-o yaml|json] spec.yaml|-",
		"  nodeprov runtimeclasses node.yaml | kubectl apply -f -\n"+
			"  nodeprov runtimeclasses -o json node.yaml > runtimeclasses.json", s)
	format := &choiceFlag{v: "yaml", values: []string{"yaml", "json"}}
	fs.Var(format, "output", "output `format`: yaml (one document per RuntimeClass) or json (a v1 List)")
	fs.Var(format, "o", "shorthand for --output")
	pos, code, ok := positional(fs, args, 1)
	if !ok {
		return code
	}
	// Diagnostics go to stderr only: stdout is for kubectl.
	doc, ok := loadSpec(pos[0], s, "text", "runtimeclasses")
	if !ok {
		return exitInvalid
	}
	rcs, err := spec.RuntimeClasses(doc)
	var ds *spec.Diagnostics
	switch {
	case errors.As(err, &ds):
		fmt.Fprint(s.err, ds.Pretty())
		fmt.Fprintf(s.err, "runtimeclasses: %s\n", problems(len(ds.Items), doc.File))
		return exitInvalid
	case err != nil:
		fmt.Fprintf(s.err, "runtimeclasses: %v\n", err)
		return exitInvalid
	}
	if format.v == "json" {
		writeJSON(s.out, spec.NewKubernetesList(rcs))
		return exitOK
	}
	out, err := spec.RuntimeClassesYAML(rcs)
	if err != nil {
		fmt.Fprintf(s.err, "runtimeclasses: %v\n", err)
		return exitFailure
	}
	if _, err := s.out.Write(out); err != nil {
		fmt.Fprintf(s.err, "runtimeclasses: %v\n", err)
		return exitFailure
	}
	return exitOK
}
