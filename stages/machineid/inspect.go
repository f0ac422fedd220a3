package machineid

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// Check names, as they appear in errors, warnings and reports.
const (
	// CheckMissing: /etc/machine-id is absent or empty at run time.
	CheckMissing = "machine-id.missing"
	// CheckUninitialized: /etc/machine-id still says "uninitialized" at
	// run time, so systemd never committed an id.
	CheckUninitialized = "machine-id.uninitialized"
	// CheckInvalid: /etc/machine-id is not 32 lowercase hex characters, or
	// is all zeros.
	CheckInvalid = "machine-id.invalid"
	// CheckDbusMismatch: /var/lib/dbus/machine-id is neither absent, nor a
	// symlink to /etc/machine-id, nor the same id.
	CheckDbusMismatch = "machine-id.dbus-mismatch"
	// CheckSealedClone: the id is one an image had when it was sealed.
	CheckSealedClone = "machine-id.sealed-clone"
	// CheckForbidden: the id is listed in machineID.forbidden.
	CheckForbidden = "machine-id.forbidden"
	// CheckBaked: an image root carries a real id, which every host booted
	// from it would share.
	CheckBaked = "machine-id.baked"
	// CheckDbusCopy: an image root has a D-Bus copy of the id that is not a
	// symlink to /etc/machine-id.
	CheckDbusCopy = "machine-id.dbus-copy"
)

// fixHint ends the messages of checks that seal or regenerate repairs.
const fixHint = "run `nodeprov seal` on the image, or set machineID.policy: regenerate"

// Content classifies what /etc/machine-id (or the D-Bus copy) holds.
type Content string

// Contents of a machine-id file.
const (
	ContentMissing       Content = "missing"
	ContentEmpty         Content = "empty"
	ContentUninitialized Content = "uninitialized"
	ContentValid         Content = "valid"
	ContentInvalid       Content = "invalid"
)

// Problem is one failed check.
type Problem struct {
	// Check is the check's name, such as "machine-id.sealed-clone".
	Check string
	// Path is the file the problem is about (IDPath or DbusPath).
	Path string
	// Message says what is wrong and how to fix it.
	Message string
}

// String returns "check: message".
func (p Problem) String() string { return p.Check + ": " + p.Message }

// CheckError is the error of a failed check under policy fail.
type CheckError struct {
	Problems []Problem
}

// Error names every failed check with its fix.
func (e *CheckError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.String()
	}
	return strings.Join(msgs, "; ")
}

// Checks returns the names of the failed checks.
func (e *CheckError) Checks() []string {
	names := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		names[i] = p.Check
	}
	return names
}

// File is what a machine-id file holds.
type File struct {
	// Exists is false when nothing is at the path (a dangling symlink
	// exists, with Content missing).
	Exists bool
	// Type is the file type from Lstat: 0 for a regular file,
	// fs.ModeSymlink, fs.ModeDir, ...
	Type fs.FileMode
	// Mode is the permission bits of a regular file.
	Mode fs.FileMode
	// Target is a symlink's target.
	Target string
	// Content classifies the contents, read through a symlink.
	Content Content
	// ID is the id when Content is valid.
	ID string
	// Raw is the contents (at most a few dozen bytes), for messages.
	Raw string
	// Why says why invalid contents are invalid.
	Why string
}

// describe names the contents for messages: an abbreviated id, or
// "(missing)", "(empty)", "uninitialized", "(invalid)".
func (f File) describe() string {
	switch f.Content {
	case ContentValid:
		return Abbrev(f.ID)
	case ContentUninitialized:
		return Uninitialized
	case ContentInvalid:
		return "(invalid)"
	}
	return "(" + string(f.Content) + ")"
}

// Status is what Inspect found.
type Status struct {
	// Live says which checks ran: run-time checks, or image checks.
	Live bool
	// ID is /etc/machine-id; Dbus is /var/lib/dbus/machine-id.
	ID, Dbus File
	// DbusLinked is true when the D-Bus copy is a symlink to
	// /etc/machine-id.
	DbusLinked bool
	// Problems are the failed checks; none means all passed.
	Problems []Problem
}

// maxIDFile bounds how much of a machine-id file is read.
const maxIDFile = 128

// Inspect runs the machine-id checks on root. Live checks are those of a
// booted host: a valid id, a consistent D-Bus copy, not a sealed image's id
// and not in forbidden. Image checks (live false) want a sealed image: no
// real id baked in (missing, empty and "uninitialized" all make systemd
// generate one) and no D-Bus copy other than a symlink.
func Inspect(root *host.Root, live bool, forbidden []string) (*Status, error) {
	st := &Status{Live: live}
	var err error
	if st.ID, err = readIDFile(root, IDPath); err != nil {
		return nil, err
	}
	if st.Dbus, err = readIDFile(root, DbusPath); err != nil {
		return nil, err
	}
	st.DbusLinked = st.Dbus.Type == fs.ModeSymlink && linksTo(DbusPath, st.Dbus.Target, IDPath)
	if live {
		err = st.checkLive(root, forbidden)
	} else {
		st.checkImage()
	}
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (st *Status) add(check, p, format string, args ...any) {
	st.Problems = append(st.Problems, Problem{Check: check, Path: p, Message: fmt.Sprintf(format, args...)})
}

func (st *Status) checkLive(root *host.Root, forbidden []string) error {
	id := st.ID
	switch id.Content {
	case ContentMissing:
		st.add(CheckMissing, IDPath, "%s is missing: this host has no machine id; set machineID.policy: regenerate, or run `systemd-machine-id-setup`", IDPath)
	case ContentEmpty:
		st.add(CheckMissing, IDPath, "%s is empty: this host has no committed machine id; set machineID.policy: regenerate, or run `systemd-machine-id-setup`", IDPath)
	case ContentUninitialized:
		st.add(CheckUninitialized, IDPath, "%s still says %q: systemd never committed an id (not booted by systemd, or first boot did not finish); set machineID.policy: regenerate, or boot the image so systemd generates one", IDPath, Uninitialized)
	case ContentInvalid:
		st.add(CheckInvalid, IDPath, "%s is not a valid machine id (%s); set machineID.policy: regenerate, or run `systemd-machine-id-setup` after removing it", IDPath, id.Why)
	}
	if !st.dbusConsistent() {
		st.add(CheckDbusMismatch, DbusPath, "%s %s, but %s is %s: D-Bus reports a different (stale or cloned) id; make it a symlink (ln -sf %s %s), %s",
			DbusPath, describeDbus(st.Dbus), IDPath, id.describe(), IDPath, DbusPath, fixHint)
	}
	if id.Content != ContentValid {
		return nil
	}
	data, _, err := root.ReadFile(SealedPath)
	if err != nil {
		return fmt.Errorf("read sealed ids: %w", err)
	}
	sealed, err := parseSealed(string(data))
	if err != nil {
		return err
	}
	if sealed[SealedHash(id.ID)] {
		st.add(CheckSealedClone, IDPath, "%s %s is the id the image had when it was sealed (%s): this host is a clone that kept the image's id; %s",
			IDPath, Abbrev(id.ID), SealedPath, fixHint)
	}
	for _, f := range forbidden {
		if f == id.ID {
			st.add(CheckForbidden, IDPath, "%s %s is listed in machineID.forbidden (an id known to be shared); %s", IDPath, Abbrev(id.ID), fixHint)
			break
		}
	}
	return nil
}

func (st *Status) checkImage() {
	switch st.ID.Content {
	case ContentValid:
		st.add(CheckBaked, IDPath, "the image's %s holds the id %s, which every host booted from it would share; %s", IDPath, Abbrev(st.ID.ID), fixHint)
	case ContentInvalid:
		st.add(CheckInvalid, IDPath, "the image's %s is not a valid machine id (%s); %s", IDPath, st.ID.Why, fixHint)
	}
	if st.Dbus.Exists && !st.DbusLinked {
		st.add(CheckDbusCopy, DbusPath, "the image's %s %s; it must be absent or a symlink to %s, or clones share it (D-Bus reads it first, systemd falls back to it); %s",
			DbusPath, describeDbus(st.Dbus), IDPath, fixHint)
	}
}

// dbusConsistent reports whether the D-Bus copy is absent, a symlink to
// /etc/machine-id, or the same valid id.
func (st *Status) dbusConsistent() bool {
	if !st.Dbus.Exists || st.DbusLinked {
		return true
	}
	return st.ID.Content == ContentValid && st.Dbus.Content == ContentValid && st.Dbus.ID == st.ID.ID
}

// describeDbus says what the D-Bus copy is, as a verb phrase.
func describeDbus(f File) string {
	switch {
	case f.Type == fs.ModeSymlink && f.Content == ContentMissing:
		return fmt.Sprintf("is a dangling symlink to %s", f.Target)
	case f.Type == fs.ModeSymlink:
		return fmt.Sprintf("is a symlink to %s, which holds %s", f.Target, f.describe())
	case f.Type != 0:
		return "is a " + plan.TypeName(f.Type)
	}
	return "holds " + f.describe()
}

// linksTo reports whether the symlink at p with target points at want,
// lexically, with an absolute target taken relative to the root.
func linksTo(p, target, want string) bool {
	if !path.IsAbs(target) {
		target = path.Join(path.Dir(p), target)
	}
	return path.Clean(target) == want
}

// readIDFile reads and classifies a machine-id file, following a symlink
// inside the root.
func readIDFile(root *host.Root, p string) (File, error) {
	var f File
	ls, err := root.Lstat(p)
	if err != nil {
		return f, err
	}
	f.Exists, f.Type, f.Mode, f.Target = ls.Exists, ls.Type, ls.Mode, ls.LinkTarget
	switch {
	case !ls.Exists:
		f.Content = ContentMissing
		return f, nil
	case ls.Type != 0 && ls.Type != fs.ModeSymlink:
		f.Content, f.Why = ContentInvalid, "a "+plan.TypeName(ls.Type)+", not a regular file"
		return f, nil
	}
	data, exists, err := readLimited(root, p)
	if err != nil {
		return f, err
	}
	if !exists {
		f.Content = ContentMissing // a dangling symlink
		return f, nil
	}
	f.Raw = data
	switch strings.TrimSuffix(data, "\n") {
	case "":
		f.Content = ContentEmpty
		if data != "" {
			f.Content, f.Why = ContentInvalid, "a lone newline"
		}
		return f, nil
	case Uninitialized:
		f.Content = ContentUninitialized
		return f, nil
	}
	id, err := ParseID(data)
	if err != nil {
		f.Content, f.Why = ContentInvalid, fmt.Sprintf("%q: %v", short(data), err)
		return f, nil
	}
	f.Content, f.ID = ContentValid, id
	return f, nil
}

// readLimited reads at most maxIDFile+1 bytes of p, so an oversized file is
// seen as invalid without reading all of it.
func readLimited(root *host.Root, p string) (string, bool, error) {
	file, err := root.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", false, nil
		}
		return "", false, err
	}
	defer file.Close()
	data, err := io.ReadAll(io.LimitReader(file, maxIDFile+1))
	if err != nil {
		return "", true, fmt.Errorf("read %s: %w", p, err)
	}
	return string(data), true, nil
}
