package plan

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/nodeprov/nodeprov/stages/host"
)

// PlanSymlink plans the symbolic link p -> target inside root: created
// when missing, replaced (atomically, by rename) when it points elsewhere
// or is a regular file, left alone when it already points at target. Any
// other file type at p is an error: nodeprov does not replace directories
// or devices with links.
func PlanSymlink(root *host.Root, resource, p, target string) (*Action, error) {
	st, err := root.Lstat(p)
	if err != nil {
		return nil, err
	}
	a := &Action{Resource: resource, Paths: []string{p}, Detail: "-> " + target}
	run := func(context.Context) error { return root.Symlink(target, p) }
	switch {
	case !st.Exists:
		a.Op, a.Run = OpCreate, run
	case st.Type == fs.ModeSymlink && st.LinkTarget == target:
		a.Op = OpNone
	case st.Type == fs.ModeSymlink:
		a.Op, a.Run, a.Detail = OpUpdate, run, fmt.Sprintf("-> %s (was -> %s)", target, st.LinkTarget)
	case st.Type == 0:
		a.Op, a.Run, a.Detail = OpUpdate, run, fmt.Sprintf("replace regular file with link -> %s", target)
	default:
		return nil, fmt.Errorf("exists and is a %s; nodeprov does not replace it with a symlink", TypeName(st.Type))
	}
	return a, nil
}
