package artifacts

import (
	"encoding/json"
	"fmt"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// RecordPath is the install record inside the root.
const RecordPath = "/var/lib/nodeprov/installed.json"

// Record says which files were installed from which artifact digest.
type Record struct {
	Version   int                       `json:"version"`
	Artifacts map[string]ArtifactRecord `json:"artifacts"`
}

// ArtifactRecord is one installed artifact.
type ArtifactRecord struct {
	URL    string                `json:"url"`
	Digest string                `json:"digest"`
	Files  map[string]FileRecord `json:"files"`
}

// FileRecord identifies an installed file's version without hashing it.
type FileRecord struct {
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
	Mode    string `json:"mode"`
	MtimeNs int64  `json:"mtimeNs"`
	Ino     uint64 `json:"ino"`
}

// LoadRecord reads the record; a missing or unreadable record is empty
// (everything is then verified by hashing once).
func LoadRecord(root *host.Root) *Record {
	r := &Record{Version: 1, Artifacts: map[string]ArtifactRecord{}}
	data, exists, err := root.ReadFile(RecordPath)
	if err != nil || !exists {
		return r
	}
	var loaded Record
	if json.Unmarshal(data, &loaded) != nil || loaded.Version != 1 || loaded.Artifacts == nil {
		return r
	}
	return &loaded
}

// Marshal renders the record deterministically.
func (r *Record) Marshal() ([]byte, error) {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// Intact reports whether art is installed exactly as recorded, and returns
// its record as it is now: same upstream URL (and pinned digest, when the
// spec pins one), and every recorded file still has its recorded size,
// mode, mtime and inode. Intact never touches the network, and hashes only
// a file whose size and mode match but whose inode or mtime do not — what
// a file-level copy of an image root (cp -a, tar, rsync) does to every
// file: same contents are intact, and the returned record carries the new
// inode and mtime, so a cloned image provisions offline and hashes once.
func (r *Record) Intact(root *host.Root, art spec.Artifact, pinned string) (ArtifactRecord, bool) {
	rec, ok := r.Artifacts[art.Name]
	if !ok || rec.URL != art.Upstream || len(rec.Files) == 0 {
		return rec, false
	}
	if pinned != "" && pinned != rec.Digest {
		return rec, false
	}
	if !sameTargets(art.Install, rec.Files) {
		return rec, false
	}
	now := ArtifactRecord{URL: rec.URL, Digest: rec.Digest, Files: make(map[string]FileRecord, len(rec.Files))}
	for p, f := range rec.Files {
		st, err := root.Lstat(p)
		if err != nil || !st.Exists || st.Type != 0 || st.Size != f.Size || plan.Octal(st.Mode) != f.Mode {
			return rec, false
		}
		if st.MtimeNs != f.MtimeNs || st.Ino != f.Ino {
			if sum, err := hashRootFile(root, p); err != nil || sum != f.SHA256 {
				return rec, false
			}
			f.MtimeNs, f.Ino = st.MtimeNs, st.Ino
		}
		now.Files[p] = f
	}
	return now, true
}

// sameTargets checks that the recorded files are the ones the install
// rule names (a changed install path must reinstall). Tree installs (To)
// learn their targets from the archive, so only the prefix is checked.
func sameTargets(in spec.Install, files map[string]FileRecord) bool {
	switch {
	case in.Path != "":
		_, ok := files[in.Path]
		return ok && len(files) == 1
	case len(in.Files) > 0:
		if len(files) != len(in.Files) {
			return false
		}
		for _, target := range in.Files {
			if _, ok := files[target]; !ok {
				return false
			}
		}
		return true
	default:
		for p := range files {
			if len(p) <= len(in.To) || p[:len(in.To)] != in.To || p[len(in.To)] != '/' {
				return false
			}
		}
		return true
	}
}

// fileRecord describes an installed file as it is now.
func fileRecord(root *host.Root, p, sha string) (FileRecord, error) {
	st, err := root.Lstat(p)
	if err != nil {
		return FileRecord{}, err
	}
	if !st.Exists {
		return FileRecord{}, fmt.Errorf("%s vanished after install", p)
	}
	return FileRecord{SHA256: sha, Size: st.Size, Mode: plan.Octal(st.Mode), MtimeNs: st.MtimeNs, Ino: st.Ino}, nil
}
