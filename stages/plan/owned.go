package plan

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"strings"

	"github.com/nodeprov/nodeprov/stages/host"
)

// OwnedDir records, for files whose format has no room for ManagedHeader
// (JSON), that nodeprov wrote them: <OwnedDir>/<path>.sha256 holds the
// SHA-256 of what it wrote last.
const OwnedDir = "/var/lib/nodeprov/owned"

// ownedRecord is the record file of p.
func ownedRecord(p string) string {
	return path.Join(OwnedDir, strings.TrimPrefix(p, "/")+".sha256")
}

// PlanOwnedFile is PlanFile for a file that cannot carry ManagedHeader. The
// record in OwnedDir plays the header's part: a file nodeprov wrote
// (recorded) is converged like any managed file, edits included; a file
// it did not write and that differs from what it would write is the
// operator's, reported as unmanaged and left alone. Writing the file
// writes its record; an identical unrecorded file is adopted: only its
// record is written.
func PlanOwnedFile(root *host.Root, resource string, want FileSpec) (*Action, error) {
	rec := ownedRecord(want.Path)
	recorded, hasRecord, err := root.ReadFile(rec)
	if err != nil {
		return nil, err
	}
	cur, exists, err := root.ReadFile(want.Path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(want.Data)
	digest := hex.EncodeToString(sum[:])
	if exists && !hasRecord && string(cur) != string(want.Data) {
		return &Action{Resource: resource, Op: OpUnmanaged,
			Detail: fmt.Sprintf("not written by nodeprov (no record %s): the operator's file, left alone; move its settings into the spec and remove it, or declare it under files:", rec)}, nil
	}
	a, err := PlanFile(root, resource, want)
	if err != nil {
		return nil, err
	}
	writeRecord := func() error {
		return root.WriteFile(rec, []byte(digest+"\n"), host.WriteOptions{Mode: 0o644})
	}
	switch {
	case a.Op.Changes():
		run := a.Run
		a.Run = func(ctx context.Context) error {
			if err := run(ctx); err != nil {
				return err
			}
			return writeRecord()
		}
		if exists && hasRecord {
			cs := sha256.Sum256(cur)
			if strings.TrimSpace(string(recorded)) != hex.EncodeToString(cs[:]) {
				a.Detail += "; edited since nodeprov wrote it"
			}
		}
	case !hasRecord && a.Op == OpNone:
		// The file is already what nodeprov writes (the record was lost):
		// only the record is written, so nothing restarts for it.
		a.Op, a.Paths = OpUpdate, []string{rec}
		a.Detail = "identical to what nodeprov writes; recorded as nodeprov's (" + rec + ")"
		a.Run = func(context.Context) error { return writeRecord() }
	}
	return a, nil
}
