// Package archive installs members of compressed tar archives (upstream
// release tarballs such as containerd's, the CNI plugins' and crictl's,
// gzip-compressed, and Kata Containers' kata-static .tar.zst) into a
// host.Root, treating every archive as hostile until it has been checked.
//
// The rules, applied to every archive:
//
//   - Only gzip- or zstd-compressed tar is accepted (.tar.gz, .tgz,
//     .tar.zst), told apart by their magic bytes, never by a name; an
//     uncompressed tar or anything else is refused. Concatenated gzip
//     members are one stream, as gzip(1) reads them; so are consecutive
//     zstd frames, and zstd's skippable frames after the first frame are
//     skipped, as zstd(1) does. A truncated or corrupt stream (checksums
//     are verified when the stream carries them), bytes after the last
//     gzip member or zstd frame, and non-zero data after the tar
//     end-of-archive marker (hidden entries) are refused.
//   - A zstd frame may not ask for a window above 16 MiB (zstd's levels up
//     to 19 use at most 8 MiB), so a hostile frame header cannot make the
//     decoder allocate gigabytes; decoding runs on the reading goroutine.
//   - Every entry's name, selected or not, must be relative, free of NUL
//     bytes, at most 1024 bytes long and without any ".." component (even one
//     that cleaning would cancel, like "bin/../ctr"). A leading "./",
//     repeated slashes and a trailing slash are normalised away.
//   - Only regular files are installed. A selected entry that is a symlink,
//     hard link, device, FIFO, sparse file or of an unknown type is refused.
//     Such entries that are not selected are ignored, unless a selected
//     member's path goes through one of them (a symlink "bin" followed by
//     "bin/containerd"): that archive is refused, whatever the order of the
//     two entries. Directory entries are never installed; the directories
//     that targets need are created with mode 0755.
//   - A selected name that appears more than once is refused (which copy
//     would win is ambiguous); repeated directory entries are harmless.
//   - A selected member with the setuid or setgid bit is refused. Other
//     modes are masked to 0755 (any execute bit set) or 0644; the sticky bit
//     and the archive's owners are ignored. Installed files belong to the
//     running user (root in production).
//   - Limits (see Limits) bound the number of entries, each entry's size,
//     the sum of the sizes, the decompressed bytes read and the compression
//     ratio, so a bomb is stopped early instead of read forever.
//   - Every member named by the selection must be found; the error lists the
//     missing names and some that exist, with a guess when a member of the
//     same base name exists ("bin/containerd" for "containerd").
//
// Errors about the archive itself are *Error values naming the member and
// the reason. Install checks the whole archive before it writes anything,
// so a refused archive leaves the root untouched.
package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
)

// Selection says which members to install where: either Files, or To with
// optional Include and Strip.
type Selection struct {
	// Files maps a member name as it appears in the archive (a leading "./"
	// is ignored) to the absolute in-root path it is installed at.
	Files map[string]string
	// To installs the archive's regular files as a tree under this absolute
	// in-root directory. Every non-directory entry in the (stripped,
	// included) tree must be a regular file.
	To string
	// Include limits To to these member paths (after Strip); each must be
	// found. Empty means every regular file.
	Include []string
	// Strip removes this many leading components from member names with
	// To; entries with no components left are skipped, like tar
	// --strip-components.
	Strip int
}

// SelectionOf is the selection of a spec install rule.
func SelectionOf(in spec.Install) Selection {
	return Selection{Files: in.Files, To: in.To, Include: in.Include, Strip: in.Strip}
}

// Limits bound what reading an archive may cost. A zero field takes its
// DefaultLimits value; a negative MaxCompressionRatio turns the ratio check
// off; other negative values are an error.
type Limits struct {
	// MaxMembers is the largest number of entries (of any type).
	MaxMembers int
	// MaxMemberSize is the largest declared size of any one entry.
	MaxMemberSize int64
	// MaxTotalSize bounds both the sum of the entries' declared sizes and
	// the number of bytes decompressed from the gzip or zstd stream.
	MaxTotalSize int64
	// MaxCompressionRatio is the largest ratio of decompressed to compressed
	// bytes, checked once more than 1 MiB has been decompressed. Release
	// tarballs of binaries compress about 3:1; a gzip bomb about 1000:1
	// (a zstd bomb far more).
	MaxCompressionRatio int
}

// DefaultLimits returns limits that fit upstream release archives with a
// wide margin: containerd's tarball holds about ten members and 150 MB.
func DefaultLimits() Limits {
	return Limits{
		MaxMembers:          10000,
		MaxMemberSize:       512 << 20,
		MaxTotalSize:        2 << 30,
		MaxCompressionRatio: 100,
	}
}

// ratioFloor is how many bytes are decompressed before the compression
// ratio is checked, so that small, very regular archives are not refused.
const ratioFloor = 1 << 20

// withDefaults fills zero fields and rejects negative ones.
func (l Limits) withDefaults() (Limits, error) {
	d := DefaultLimits()
	if l.MaxMembers < 0 || l.MaxMemberSize < 0 || l.MaxTotalSize < 0 {
		return l, fmt.Errorf("invalid archive limits %+v: negative values are not allowed", l)
	}
	if l.MaxMembers == 0 {
		l.MaxMembers = d.MaxMembers
	}
	if l.MaxMemberSize == 0 {
		l.MaxMemberSize = d.MaxMemberSize
	}
	if l.MaxTotalSize == 0 {
		l.MaxTotalSize = d.MaxTotalSize
	}
	if l.MaxCompressionRatio == 0 {
		l.MaxCompressionRatio = d.MaxCompressionRatio
	}
	return l, nil
}

// Member is one regular file that is (or would be) installed.
type Member struct {
	// Name is the cleaned member name (no leading "./").
	Name string
	// Target is the absolute in-root path it is installed at.
	Target string
	// Mode is 0755 or 0644.
	Mode fs.FileMode
	// Size is the member's size in bytes.
	Size int64
	// SHA256 is the hex digest of the member's contents.
	SHA256 string
	// Unchanged is set by Install when the target already held exactly
	// these contents, mode and owner, so it was left alone.
	Unchanged bool
}

// Error reports an archive, or a selection, that is refused.
type Error struct {
	// Member is the member concerned, as named in the archive (cleaned when
	// the name itself is valid); empty when the archive as a whole is.
	Member string
	// Reason says what is wrong, in lower case.
	Reason string
	// Err is the underlying cause, if any.
	Err error
}

func (e *Error) Error() string {
	msg := e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.Member != "" {
		return fmt.Sprintf("archive member %s: %s", quoteName(e.Member), msg)
	}
	return "archive: " + msg
}

// quoteName quotes a member name for a message, shortening a very long one.
func quoteName(name string) string {
	const show = 128
	if len(name) <= show {
		return strconv.Quote(name)
	}
	return strconv.Quote(name[:show]) + fmt.Sprintf("... (%d bytes)", len(name))
}

func (e *Error) Unwrap() error { return e.Err }

// Plan reads the archive from r once and returns the members that the
// selection would install, with their digests, in archive order. It returns
// an error for the first entry that makes the archive untrustworthy, selected
// or not, for a broken stream, an exceeded limit, or a selection that does
// not match the archive. Plan never writes anything.
func Plan(r io.Reader, sel Selection, lim Limits) ([]Member, error) {
	return plan(context.Background(), r, sel, lim)
}

func plan(ctx context.Context, r io.Reader, sel Selection, lim Limits) ([]Member, error) {
	s, err := newScanner(ctx, sel, lim)
	if err != nil {
		return nil, err
	}
	return s.run(r, func(m *Member, data io.Reader) error {
		h := sha256.New()
		if _, err := io.Copy(h, data); err != nil {
			return err
		}
		m.SHA256 = hex.EncodeToString(h.Sum(nil))
		return nil
	})
}

// Install checks the archive and then installs the selected members into
// root. open must return the same bytes each time it is called (a verified
// file in the download cache): the first pass checks every entry and hashes
// the selected members, and only when the whole archive passes does a second
// pass stream each member into its target (see InstallPlanned); members are
// never held in memory.
func Install(ctx context.Context, root *host.Root, open func() (io.ReadCloser, error), sel Selection, lim Limits) ([]Member, error) {
	members, err := readWith(ctx, open, func(r io.Reader) ([]Member, error) {
		return plan(ctx, r, sel, lim)
	})
	if err != nil {
		return nil, err
	}
	return InstallPlanned(ctx, root, open, sel, lim, members)
}

// InstallPlanned installs members, the result of Plan over the bytes open
// returns, in one pass over the archive: each member is streamed into its
// target and atomically replaces it through root.WriteFileFrom. Plan has
// already checked the whole archive, so this pass only has to prove the
// bytes are still the planned ones: a member that is not the next planned
// one, or whose contents differ from the planned digest, is refused and
// never renamed into place. A target that already holds the member's
// contents with the right mode and owner is left alone (Member.Unchanged),
// so installing the same archive twice gives the same tree and the second
// time writes nothing.
//
// An existing directory at a target, or a non-directory in a target's
// parent path, is reported before anything is written. An I/O error, or
// bytes that changed since Plan, can leave the members installed before it
// (each complete).
func InstallPlanned(ctx context.Context, root *host.Root, open func() (io.ReadCloser, error), sel Selection, lim Limits, planned []Member) ([]Member, error) {
	members := slices.Clone(planned)
	uid, gid := os.Geteuid(), os.Getegid()
	changed := 0
	for i := range members {
		m := &members[i]
		same, err := preflight(root, m, uid, gid)
		if err != nil {
			return nil, err
		}
		m.Unchanged = same
		if !same {
			changed++
		}
	}
	if changed == 0 {
		return members, nil
	}

	return readWith(ctx, open, func(r io.Reader) ([]Member, error) {
		s, err := newScanner(ctx, sel, lim)
		if err != nil {
			return nil, err
		}
		n := 0
		got, err := s.run(r, func(m *Member, data io.Reader) error {
			if n >= len(members) || !samePlan(members[n], *m) {
				return &Error{Member: m.Name, Reason: "archive changed between the check and the install"}
			}
			want := members[n]
			n++
			m.SHA256, m.Unchanged = want.SHA256, want.Unchanged
			if want.Unchanged {
				return nil
			}
			v := CheckedReader(data, want.Size, want.SHA256, func(string) error {
				return &Error{Member: want.Name, Reason: "contents changed between the check and the install"}
			})
			_, err := root.WriteFileFrom(m.Target, v, host.WriteOptions{Mode: m.Mode, UID: uid, GID: gid})
			var ae *Error
			if errors.As(err, &ae) {
				return ae
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		if n != len(members) {
			return nil, &Error{Reason: "archive changed between the check and the install"}
		}
		return got, nil
	})
}

// readWith opens the archive, runs f on it and closes it.
func readWith(ctx context.Context, open func() (io.ReadCloser, error), f func(io.Reader) ([]Member, error)) ([]Member, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rc, err := open()
	if err != nil {
		return nil, fmt.Errorf("open archive: %w", err)
	}
	members, err := f(rc)
	if cerr := rc.Close(); err == nil && cerr != nil {
		return nil, fmt.Errorf("close archive: %w", cerr)
	}
	return members, err
}

// samePlan reports whether b, met in the second pass, is the member a that
// the first pass checked.
func samePlan(a, b Member) bool {
	return a.Name == b.Name && a.Target == b.Target && a.Mode == b.Mode && a.Size == b.Size
}

// preflight checks that m can be installed at its target without writing,
// and reports whether the target already holds exactly m.
func preflight(root *host.Root, m *Member, uid, gid int) (bool, error) {
	for p := path.Dir(m.Target); p != "/"; p = path.Dir(p) {
		st, err := root.Lstat(p)
		if err != nil {
			return false, fmt.Errorf("install %s: %w", m.Name, err)
		}
		if st.Exists && st.Type != fs.ModeDir && st.Type != fs.ModeSymlink {
			return false, fmt.Errorf("install %s at %s: %s exists and is not a directory", m.Name, m.Target, p)
		}
	}
	st, err := root.Lstat(m.Target)
	if err != nil {
		return false, fmt.Errorf("install %s: %w", m.Name, err)
	}
	switch {
	case !st.Exists:
		return false, nil
	case st.Type == fs.ModeDir:
		return false, fmt.Errorf("install %s at %s: target exists and is a directory", m.Name, m.Target)
	case st.Type != 0 || st.Mode != m.Mode || st.Size != m.Size || st.UID != uid || st.GID != gid:
		return false, nil
	}
	f, err := root.Open(m.Target)
	if err != nil {
		return false, fmt.Errorf("install %s: %w", m.Name, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, fmt.Errorf("install %s: read existing %s: %w", m.Name, m.Target, err)
	}
	return hex.EncodeToString(h.Sum(nil)) == m.SHA256, nil
}

// CheckedReader passes r's bytes through and fails at their end — or as
// soon as there are more than size of them, when size is not negative —
// unless they are size bytes (when given) hashing to sha256hex. The error
// is mismatch's, given the sha256 of what was read ("" when the size was
// exceeded), so that a reader that writes as it goes (an atomic write) never
// commits changed bytes: the install of an archive member checked in an
// earlier pass, a cache file verified when it was fetched.
func CheckedReader(r io.Reader, size int64, sha256hex string, mismatch func(got string) error) io.Reader {
	return &checkedReader{r: r, h: sha256.New(), size: size, want: sha256hex, mismatch: mismatch}
}

type checkedReader struct {
	r        io.Reader
	h        hash.Hash
	n, size  int64
	want     string
	mismatch func(got string) error
}

func (c *checkedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if c.size >= 0 && c.n > c.size {
		return 0, c.mismatch("")
	}
	if err == io.EOF {
		if got := hex.EncodeToString(c.h.Sum(nil)); (c.size >= 0 && c.n != c.size) || got != c.want {
			return n, c.mismatch(got)
		}
	}
	return n, err
}
