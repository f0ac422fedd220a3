package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"

	"github.com/nodeprov/nodeprov/stages/host"
)

// Staged is an archive extracted in one pass into a host.Staging: every
// entry checked as Plan checks it, each selected member decompressed once,
// hashed and written next to its target under a temporary name. Commit it
// only once the archive's own digest (and signature) hold — until then
// nothing of it is at a final path — or Discard it.
type Staged struct {
	// Members are the selected members in archive order, with digests.
	Members []Member
	st      *host.Staging
}

// Stage reads the archive from r once, applying every rule of Plan, and
// stages each selected member in root as its bytes arrive: r may be a
// download still in progress. On any error nothing stays staged.
func Stage(ctx context.Context, root *host.Root, r io.Reader, sel Selection, lim Limits) (*Staged, error) {
	s, err := newScanner(ctx, sel, lim)
	if err != nil {
		return nil, err
	}
	st := root.NewStaging()
	uid, gid := os.Geteuid(), os.Getegid()
	members, err := s.run(r, func(m *Member, data io.Reader) error {
		h := sha256.New()
		_, err := st.Write(m.Target, io.TeeReader(data, h), host.WriteOptions{Mode: m.Mode, UID: uid, GID: gid})
		var ae *Error
		if errors.As(err, &ae) {
			return ae
		}
		m.SHA256 = hex.EncodeToString(h.Sum(nil))
		return err
	})
	if err != nil {
		st.Discard()
		return nil, err
	}
	return &Staged{Members: members, st: st}, nil
}

// Commit puts the staged members in place: all renamed once all are on
// disk, each directory synced once. A member marked Unchanged, or whose
// target already holds exactly its contents, mode and owner, is left alone
// (and marked so). A target that is a directory, or a parent path that is
// not one, is an error before anything is renamed. A failed Commit leaves
// nothing staged behind.
func (s *Staged) Commit() error {
	uid, gid := os.Geteuid(), os.Getegid()
	for i := range s.Members {
		m := &s.Members[i]
		if !m.Unchanged {
			same, err := preflight(s.st.Root(), m, uid, gid)
			if err != nil {
				s.st.Discard()
				return err
			}
			m.Unchanged = same
		}
		if m.Unchanged {
			s.st.Drop(m.Target)
		}
	}
	return s.st.Commit()
}

// Discard removes everything staged; after Commit it does nothing.
func (s *Staged) Discard() { s.st.Discard() }
