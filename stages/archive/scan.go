package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// kind is the type of a tar entry, as far as installing goes.
type kind uint8

const (
	kindDir kind = iota
	kindFile
	kindSymlink
	kindHardlink
	kindChar
	kindBlock
	kindFifo
	kindSparse
	kindOther
)

// kindOf classifies a header returned by tar.Reader.Next.
func kindOf(h *tar.Header) kind {
	switch h.Typeflag {
	case tar.TypeDir:
		return kindDir
	case tar.TypeReg:
		for k := range h.PAXRecords {
			if strings.HasPrefix(k, "GNU.sparse.") {
				return kindSparse
			}
		}
		return kindFile
	case tar.TypeSymlink:
		return kindSymlink
	case tar.TypeLink:
		return kindHardlink
	case tar.TypeChar:
		return kindChar
	case tar.TypeBlock:
		return kindBlock
	case tar.TypeFifo:
		return kindFifo
	case tar.TypeGNUSparse:
		return kindSparse
	}
	return kindOther
}

// hasData reports whether entries of kind k carry a data section.
func (k kind) hasData() bool {
	return k == kindFile || k == kindSparse || k == kindOther
}

// describe says what an entry of kind k is, for messages.
func describe(k kind, h *tar.Header) string {
	switch k {
	case kindDir:
		return "a directory"
	case kindFile:
		return "a regular file"
	case kindSymlink:
		return fmt.Sprintf("a symlink to %q", h.Linkname)
	case kindHardlink:
		return fmt.Sprintf("a hard link to %q", h.Linkname)
	case kindChar:
		return "a character device"
	case kindBlock:
		return "a block device"
	case kindFifo:
		return "a FIFO"
	case kindSparse:
		return "a sparse file"
	}
	return fmt.Sprintf("an entry of unsupported type %q", h.Typeflag)
}

// entry is what the scanner remembers about a member name.
type entry struct {
	kinds uint16 // bit set of the kinds of entries with this name
	what  string // describe() of the first entry that is not a directory
}

const dirBit = 1 << kindDir

// scanner checks one pass over an archive.
type scanner struct {
	ctx context.Context
	sel *selector
	lim Limits

	src      *source
	st       *stream
	seen     map[string]*entry
	via      map[string]string // path of a directory -> a selected member inside it
	found    map[string]bool   // selection keys met
	files    []string          // names of regular files, in archive order
	members  []Member
	count    int
	declared int64
}

func newScanner(ctx context.Context, sel Selection, lim Limits) (*scanner, error) {
	s, err := newSelector(sel)
	if err != nil {
		return nil, err
	}
	l, err := lim.withDefaults()
	if err != nil {
		return nil, err
	}
	return &scanner{
		ctx:   ctx,
		sel:   s,
		lim:   l,
		seen:  make(map[string]*entry),
		via:   make(map[string]string),
		found: make(map[string]bool),
	}, nil
}

// run reads the archive from r, checks every entry and calls onFile for
// each selected regular file with a reader of its contents. onFile may fill
// in m.SHA256 and must return *Error values unchanged.
func (s *scanner) run(r io.Reader, onFile func(m *Member, data io.Reader) error) ([]Member, error) {
	s.src = &source{ctx: s.ctx, r: r}
	st, err := newStream(s.src, s.lim)
	if err != nil {
		return nil, err
	}
	defer st.close()
	s.st = st
	tr := tar.NewReader(st)
	last := ""
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
			return nil, s.readError(err, "", last)
		}
		name, err := s.entry(hdr)
		if err != nil {
			return nil, err
		}
		last = name
		m, ok, err := s.selected(hdr, name)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if err := onFile(&m, &memberReader{s: s, r: tr, name: name}); err != nil {
			return nil, err
		}
		s.members = append(s.members, m)
	}
	if err := st.drain(); err != nil {
		return nil, err
	}
	if err := s.finish(); err != nil {
		return nil, err
	}
	return s.members, nil
}

// entry applies the rules that hold for every entry, selected or not, and
// returns its cleaned name.
func (s *scanner) entry(hdr *tar.Header) (string, error) {
	s.count++
	if s.count > s.lim.MaxMembers {
		return "", &Error{Reason: fmt.Sprintf("more than %d members (the limit)", s.lim.MaxMembers)}
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return "", &Error{Member: hdr.Name, Reason: "unsafe name", Err: err}
	}
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return name, nil // archive-wide PAX records, not a file
	}
	k := kindOf(hdr)
	if name == "." && k != kindDir {
		return "", &Error{Member: hdr.Name, Reason: "names the archive root but is " + describe(k, hdr)}
	}
	if k.hasData() {
		if hdr.Size > s.lim.MaxMemberSize {
			return "", &Error{Member: name, Reason: fmt.Sprintf("size %d exceeds the limit of %d bytes per member", hdr.Size, s.lim.MaxMemberSize)}
		}
		s.declared += hdr.Size
		if s.declared > s.lim.MaxTotalSize {
			return "", &Error{Member: name, Reason: fmt.Sprintf("member sizes add up to more than the limit of %d bytes", s.lim.MaxTotalSize)}
		}
	}
	e := s.seen[name]
	if e == nil {
		e = &entry{}
		s.seen[name] = e
	}
	if k != kindDir {
		if e.what == "" {
			e.what = describe(k, hdr)
		}
		// A selected member already met goes through this path.
		if m, ok := s.via[name]; ok {
			return "", &Error{Member: m, Reason: fmt.Sprintf("its parent %q is %s in the archive; refusing to write through it", name, e.what)}
		}
	}
	if k == kindFile {
		s.files = append(s.files, name)
	}
	return name, nil
}

// selected applies the rules for selected entries: it reports whether the
// entry is a member to install and returns it.
func (s *scanner) selected(hdr *tar.Header, name string) (Member, bool, error) {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return Member{}, false, nil
	}
	k := kindOf(hdr)
	e := s.seen[name]
	prev := e.kinds
	e.kinds |= 1 << k
	target, key, ok := s.sel.match(name)
	if !ok {
		return Member{}, false, nil
	}
	s.found[key] = true
	if prev != 0 && (prev != dirBit || k != kindDir) {
		return Member{}, false, &Error{Member: name, Reason: "appears more than once in the archive; which copy would win is ambiguous"}
	}
	switch k {
	case kindFile:
	case kindDir:
		if s.sel.files != nil {
			return Member{}, false, &Error{Member: name, Reason: "is a directory; only regular files are installed"}
		}
		return Member{}, false, nil
	default:
		return Member{}, false, &Error{Member: name, Reason: "is " + describe(k, hdr) + "; only regular files are installed"}
	}
	if s.sel.to != "" && !within(target, s.sel.to) {
		return Member{}, false, &Error{Member: name, Reason: fmt.Sprintf("target %s is outside %s", target, s.sel.to)}
	}
	const setid = 0o6000
	if hdr.Mode&setid != 0 {
		return Member{}, false, &Error{Member: name, Reason: fmt.Sprintf("has the setuid or setgid bit (mode %04o); such files are refused", hdr.Mode&0o7777)}
	}
	for p := path.Dir(name); p != "."; p = path.Dir(p) {
		if pe := s.seen[p]; pe != nil && pe.kinds&^dirBit != 0 {
			return Member{}, false, &Error{Member: name, Reason: fmt.Sprintf("its parent %q is %s in the archive; refusing to write through it", p, pe.what)}
		}
		if _, ok := s.via[p]; !ok {
			s.via[p] = name
		}
	}
	mode := fs.FileMode(0o644)
	if hdr.Mode&0o111 != 0 {
		mode = 0o755
	}
	return Member{Name: name, Target: target, Mode: mode, Size: hdr.Size}, true, nil
}

// finish applies the checks that need the whole archive.
func (s *scanner) finish() error {
	var missing []string
	for _, key := range s.sel.keys() {
		if !s.found[key] {
			missing = append(missing, key)
		}
	}
	if len(missing) > 0 {
		descs := make([]string, len(missing))
		for i, m := range missing {
			descs[i] = s.sel.describeKey(m)
		}
		msg := "not found in the archive: " + strings.Join(descs, ", ")
		return &Error{Reason: msg + s.layoutHint(missing)}
	}
	if len(s.members) == 0 {
		return &Error{Reason: fmt.Sprintf("no regular files to install under %s with strip %d", s.sel.to, s.sel.strip) + s.layoutHint(nil)}
	}
	return nil
}

// layoutHint lists some regular files that the archive has, and guesses
// which ones were meant by the missing names.
func (s *scanner) layoutHint(missing []string) string {
	if len(s.files) == 0 {
		return "; the archive has no regular files"
	}
	const show = 5
	var b strings.Builder
	b.WriteString("; the archive has ")
	for i, f := range s.files[:min(len(s.files), show)] {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", f)
	}
	if len(s.files) > show {
		fmt.Fprintf(&b, " and %d more regular files", len(s.files)-show)
	}
	var guesses []string
	for _, m := range missing {
		base := path.Base(m)
		for _, f := range s.files {
			if f != m && path.Base(f) == base && !slices.Contains(guesses, f) {
				guesses = append(guesses, fmt.Sprintf("%q", f))
				break
			}
		}
	}
	if len(guesses) > 0 {
		b.WriteString("; did you mean " + strings.Join(guesses, ", ") + "?")
	}
	return b.String()
}

// readError turns an error met while reading the tar stream into the
// error to return.
func (s *scanner) readError(err error, member, after string) error {
	var ae *Error
	switch {
	case errors.As(err, &ae):
		if ae.Member == "" && member != "" {
			c := *ae
			c.Member = member
			return &c
		}
		return ae
	case s.src.err != nil:
		return s.src.sourceError()
	}
	where := ""
	if after != "" {
		where = fmt.Sprintf(" after member %q", after)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &Error{Member: member, Reason: "truncated tar stream" + where}
	}
	return &Error{Member: member, Reason: "invalid tar stream" + where, Err: err}
}

// memberReader reads a member's contents, turning read errors into the
// errors to return.
type memberReader struct {
	s    *scanner
	r    io.Reader
	name string
}

func (m *memberReader) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	if err != nil && err != io.EOF {
		err = m.s.readError(err, m.name, "")
	}
	return n, err
}
