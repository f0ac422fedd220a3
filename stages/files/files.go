// Package files is the files stage: plain files, directories and symbolic
// links from the spec. (The files that come with a managed containerd, the
// CNI conflist and /etc/crictl.yaml, are the containerd stage's.)
package files

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// maxDecodedFile bounds a gzip-encoded file's decompressed size.
const maxDecodedFile = 64 << 20

// Stage converges the spec's files: regular files, directories and
// symbolic links.
type Stage struct{}

// Name implements plan.Stage.
func (Stage) Name() string { return "files" }

// Plan implements plan.Stage.
func (Stage) Plan(ctx context.Context, env *plan.Env) ([]*plan.Action, error) {
	var actions []*plan.Action
	for _, f := range env.Spec.Files {
		if dir := volatileDir(f.Path); dir != "" && !env.Live {
			env.Warnf("files: %s is under %s, which is emptied at boot (tmpfs or cleaned by systemd-tmpfiles): written into this image root, it will not be there on the booted host; use a tmpfiles.d entry or a unit to create it at boot", f.Path, dir)
		}
		a, err := planSpecFile(env.Root, f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Path, err)
		}
		actions = append(actions, a)
	}
	return actions, nil
}

// volatileDir returns the directory of p that does not survive a boot
// (/run, /tmp, /var/run), or "".
func volatileDir(p string) string {
	for _, dir := range []string{"/run", "/tmp", "/var/run"} {
		if p == dir || strings.HasPrefix(p, dir+"/") {
			return dir
		}
	}
	return ""
}

func planSpecFile(root *host.Root, f spec.File) (*plan.Action, error) {
	uid, gid, err := ResolveOwner(root, f.Owner)
	if err != nil {
		return nil, err
	}
	mode := f.Mode.Perm(0o644)
	switch f.Type {
	case "directory":
		return planDir(root, f.Path, f.Mode.Perm(0o755), uid, gid)
	case "symlink":
		return plan.PlanSymlink(root, "symlink "+f.Path, f.Path, f.Target)
	}
	data, err := decodeContents(f)
	if err != nil {
		return nil, err
	}
	return plan.PlanFile(root, "file "+f.Path, plan.FileSpec{Path: f.Path, Data: data, Mode: mode, UID: uid, GID: gid})
}

func planDir(root *host.Root, p string, mode fs.FileMode, uid, gid int) (*plan.Action, error) {
	st, err := root.Lstat(p)
	if err != nil {
		return nil, err
	}
	a := &plan.Action{Resource: "directory " + p, Paths: []string{p}}
	run := func(context.Context) error { return root.EnsureDir(p, mode, uid, gid) }
	switch {
	case !st.Exists:
		a.Op, a.Run = plan.OpCreate, run
		a.Detail = fmt.Sprintf("mode %s, owner %d:%d", plan.Octal(mode), uid, gid)
		return a, nil
	case st.Type != fs.ModeDir:
		return nil, fmt.Errorf("exists and is a %s, not a directory", describeType(st.Type))
	}
	var changes []string
	if st.Mode != mode {
		changes = append(changes, fmt.Sprintf("mode %s -> %s", plan.Octal(st.Mode), plan.Octal(mode)))
	}
	if st.UID != uid || st.GID != gid {
		changes = append(changes, fmt.Sprintf("owner %d:%d -> %d:%d", st.UID, st.GID, uid, gid))
	}
	a.Op = plan.OpNone
	if len(changes) > 0 {
		a.Op, a.Run, a.Detail = plan.OpUpdate, run, strings.Join(changes, ", ")
	}
	return a, nil
}

func describeType(t fs.FileMode) string {
	if t == 0 {
		return "regular file"
	}
	return plan.TypeName(t)
}

func decodeContents(f spec.File) ([]byte, error) {
	switch f.Encoding {
	case "base64", "gzip+base64":
		raw, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(f.Contents), ""))
		if err != nil {
			return nil, fmt.Errorf("decode base64 contents: %w", err)
		}
		if f.Encoding == "base64" {
			return raw, nil
		}
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("decode gzip contents: %w", err)
		}
		data, err := io.ReadAll(io.LimitReader(zr, maxDecodedFile+1))
		if err != nil {
			return nil, fmt.Errorf("decode gzip contents: %w", err)
		}
		if len(data) > maxDecodedFile {
			return nil, fmt.Errorf("gzip contents expand beyond %d bytes", maxDecodedFile)
		}
		return data, nil
	}
	return []byte(f.Contents), nil
}

// ResolveOwner turns "user:group", "user" (group of the same name) or
// numeric ids into ids, looking names up in the target root's /etc/passwd
// and /etc/group, never the host's. Empty means root.
func ResolveOwner(root *host.Root, owner string) (uid, gid int, err error) {
	if owner == "" {
		return 0, 0, nil
	}
	user, group, ok := strings.Cut(owner, ":")
	if !ok {
		group = user
	}
	// root is uid and gid 0 everywhere, including an image root that has
	// no /etc/passwd yet.
	if user != "root" {
		if uid, err = root.LookupUser(user); err != nil {
			return 0, 0, fmt.Errorf("owner %q: %w", owner, err)
		}
	}
	if group != "root" {
		if gid, err = root.LookupGroup(group); err != nil {
			return 0, 0, fmt.Errorf("owner %q: %w", owner, err)
		}
	}
	return uid, gid, nil
}
