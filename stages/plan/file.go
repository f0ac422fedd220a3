package plan

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"strings"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/textdiff"
)

// ManagedHeader starts every file nodeprov generates (not files whose
// contents come verbatim from the spec).
const ManagedHeader = "# Managed by nodeprov: edits are overwritten by the next apply.\n"

// maxDiffBytes bounds diffs kept in reports; larger changes are summarised.
const maxDiffBytes = 64 << 10

// FileSpec is the desired state of one regular file.
type FileSpec struct {
	Path     string
	Data     []byte
	Mode     fs.FileMode
	UID, GID int
	// Secret hides the contents diff. Files that are not world-readable
	// are treated as secret too: they may hold credentials that must not
	// reach logs.
	Secret bool
	// Redact shows the diff, whatever the mode, with every secret in it
	// replaced by spec.Redacted (spec.Redact on both sides): for files
	// nodeprov renders, whose secrets are `key = value` pairs and URL
	// credentials that spec.Redact recognises.
	Redact bool
}

// PlanFile compares a desired file with the root and returns the action
// that converges it: a create, a content update (atomic replace), a
// metadata-only update, or none.
func PlanFile(root *host.Root, resource string, want FileSpec) (*Action, error) {
	st, err := root.Lstat(want.Path)
	if err != nil {
		return nil, err
	}
	a := &Action{Resource: resource, Paths: []string{want.Path}}
	hide := !want.Redact && (want.Secret || want.Mode&0o004 == 0)
	write := func(ctx context.Context) error {
		return root.WriteFile(want.Path, want.Data, host.WriteOptions{Mode: want.Mode, UID: want.UID, GID: want.GID})
	}
	if !st.Exists {
		a.Op, a.Run = OpCreate, write
		a.Detail = fmt.Sprintf("%d bytes, mode %s, owner %d:%d", len(want.Data), Octal(want.Mode), want.UID, want.GID)
		a.Diff = fileDiff(want.Path, nil, want.Data, hide)
		return a, nil
	}
	if st.Type != 0 && st.Type != fs.ModeSymlink {
		return nil, fmt.Errorf("%s exists and is a %s, not a regular file; remove it or change the spec", want.Path, TypeName(st.Type))
	}
	if st.Type == fs.ModeSymlink {
		a.Op, a.Run = OpUpdate, write
		a.Detail = fmt.Sprintf("replace symlink (-> %s) with a regular file", st.LinkTarget)
		return a, nil
	}
	cur, _, err := root.ReadFile(want.Path)
	if err != nil {
		return nil, err
	}
	var changes []string
	if !bytes.Equal(cur, want.Data) {
		changes = append(changes, "contents")
		a.Diff = fileDiff(want.Path, cur, want.Data, hide || (!want.Redact && st.Mode&0o004 == 0))
	}
	if st.Mode != want.Mode {
		changes = append(changes, fmt.Sprintf("mode %s -> %s", Octal(st.Mode), Octal(want.Mode)))
	}
	if st.UID != want.UID || st.GID != want.GID {
		changes = append(changes, fmt.Sprintf("owner %d:%d -> %d:%d", st.UID, st.GID, want.UID, want.GID))
	}
	switch {
	case len(changes) == 0:
		a.Op = OpNone
	case changes[0] == "contents":
		a.Op, a.Run = OpUpdate, write
	default:
		a.Op = OpUpdate
		a.Run = func(ctx context.Context) error {
			if err := root.Chown(want.Path, want.UID, want.GID); err != nil {
				return err
			}
			return root.Chmod(want.Path, want.Mode)
		}
	}
	a.Detail = strings.Join(changes, ", ")
	return a, nil
}

// PlanRemove returns the action that deletes a file nodeprov wrote earlier
// and no longer wants, or none when it is absent.
func PlanRemove(root *host.Root, resource, p string) (*Action, error) {
	st, err := root.Lstat(p)
	if err != nil {
		return nil, err
	}
	a := &Action{Resource: resource, Op: OpNone, Paths: []string{p}}
	if st.Exists {
		a.Op, a.Detail = OpDelete, "no longer in the spec"
		a.Run = func(context.Context) error { return root.Remove(p) }
	}
	return a, nil
}

// fileDiff is the unified diff of a file's contents, "" for a secret
// file. Every diff goes through spec.Redact, so a secret that reaches a
// file nodeprov renders (a registry password, proxy credentials, a token
// in an operator's patch) never reaches a report.
func fileDiff(p string, old, new []byte, secret bool) string {
	if secret {
		return ""
	}
	ro, rn := []byte(spec.Redact(string(old))), []byte(spec.Redact(string(new)))
	if bytes.Equal(ro, rn) {
		if !bytes.Equal(old, new) {
			return "(only secret values changed; not shown)\n"
		}
		return ""
	}
	d := textdiff.Unified(p, p, ro, rn, 3)
	if len(d) > maxDiffBytes {
		return fmt.Sprintf("(diff of %d bytes omitted)\n", len(d))
	}
	return d
}

// Octal formats permission bits, including setuid, setgid and sticky, as
// "0755".
func Octal(m fs.FileMode) string {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return fmt.Sprintf("%04o", v)
}

// TypeName names a file type for messages ("directory", "FIFO").
func TypeName(t fs.FileMode) string {
	switch {
	case t&fs.ModeDir != 0:
		return "directory"
	case t&fs.ModeSymlink != 0:
		return "symlink"
	case t&fs.ModeNamedPipe != 0:
		return "FIFO"
	case t&fs.ModeSocket != 0:
		return "socket"
	case t&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}
