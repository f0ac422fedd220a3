package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"maps"
	"path"
	"slices"
	"strings"
	"testing"
)

// FuzzSelect fuzzes the member filter: the archive's entry names and types,
// and the selection (Files, or To with Include and Strip), all come from the
// fuzzer. Plan must not panic and must return only *Error values; when it
// accepts, the members must be exactly the regular files that an
// independent reading of the selection picks, each at the target that
// reading computes, none reached through a link entry of the archive.
//
// entries holds one entry per line: a type letter (f file, d directory,
// l symlink, h hard link, c character device, p FIFO), the name, and for
// links ">" and the link target. files holds "member=target" lines; when it
// is empty the selection is To (to, include lines, strip).
func FuzzSelect(f *testing.F) {
	f.Add("fbin/containerd\nfbin/ctr\nfREADME", "bin/containerd=/usr/local/bin/containerd", "", "", uint8(0))
	f.Add("d./\nf./bridge\nf./host-local\nf./LICENSE", "", "/opt/cni/bin", "bridge\nhost-local", uint8(0))
	f.Add("dcontainerd-2.1.4/\ndcontainerd-2.1.4/bin/\nfcontainerd-2.1.4/bin/ctr", "", "/usr/local", "", uint8(1))
	f.Add("lbin>/etc\nfbin/containerd", "bin/containerd=/usr/local/bin/containerd", "", "", uint8(0))
	f.Add("fa/b/c\nha/x>a/b/c\nfa/x/y", "", "/opt/x", "", uint8(1))
	f.Add("fbin/containerd\nfbin/containerd", "", "/opt/x", "", uint8(0))
	f.Add("f./a//b/\nfc", "", "/opt//x/", "a/b", uint8(0))
	f.Add("fa/../b\nfc", "", "/opt/x", "", uint8(0))
	f.Add("fa\npfifo\ncdev", "a=/x/a\n./a=/x/b", "", "", uint8(0))
	f.Add("fa/b", "", "/", "", uint8(70))
	lim := Limits{MaxMembers: 64, MaxMemberSize: 1 << 10, MaxTotalSize: 1 << 16}
	f.Fuzz(func(t *testing.T, entries, files, to, include string, strip uint8) {
		ents, ok := parseFuzzEntries(entries)
		if !ok {
			return
		}
		var buf bytes.Buffer
		if err := writeTar(&buf, ents); err != nil {
			return // a name the tar writer cannot encode
		}
		data := gz(t, buf.Bytes())
		sel := Selection{Strip: int(strip)}
		if files != "" {
			sel.Files = map[string]string{}
			for line := range strings.SplitSeq(files, "\n") {
				member, target, _ := strings.Cut(line, "=")
				sel.Files[member] = target
			}
		} else {
			sel.To = to
			if include != "" {
				sel.Include = strings.Split(include, "\n")
			}
		}
		members, err := Plan(bytes.NewReader(data), sel, lim)
		if err != nil {
			var ae *Error
			if !errors.As(err, &ae) || members != nil {
				t.Fatalf("error %q (%T) with members %v", err, err, members)
			}
			return
		}
		checked := sel
		if sel.Files != nil {
			checked.Files = map[string]string{}
			for k, v := range sel.Files {
				checked.Files[path.Clean(k)] = path.Clean(v)
			}
		} else {
			checked.To = path.Clean(sel.To)
		}
		checkMembers(t, checked, lim, members)

		want := expectedSelection(ents, sel)
		got := map[string]string{}
		for _, m := range members {
			got[m.Name] = m.Target
		}
		if !maps.Equal(got, want) {
			t.Fatalf("selection %+v over %q\ngot  %v\nwant %v", sel, entries, got, want)
		}
		for _, m := range members {
			for p := path.Dir(m.Name); p != "."; p = path.Dir(p) {
				for _, e := range ents {
					if path.Clean(e.name) == p && e.typ != tar.TypeDir {
						t.Fatalf("member %q accepted though its parent %q is an entry of type %q", m.Name, p, e.typ)
					}
				}
			}
		}
	})
}

// parseFuzzEntries turns the fuzzer's entry lines into archive entries.
func parseFuzzEntries(s string) ([]ent, bool) {
	var out []ent
	for line := range strings.SplitSeq(s, "\n") {
		if line == "" {
			continue
		}
		name, link, _ := strings.Cut(line[1:], ">")
		switch line[0] {
		case 'f':
			out = append(out, file(name, 0o755, name))
		case 'd':
			out = append(out, dir(name))
		case 'l':
			out = append(out, symlink(name, link))
		case 'h':
			out = append(out, hardlink(name, link))
		case 'c':
			out = append(out, special(name, tar.TypeChar))
		case 'p':
			out = append(out, special(name, tar.TypeFifo))
		default:
			return nil, false
		}
	}
	return out, len(out) > 0 && len(out) <= 64
}

// expectedSelection is an independent reading of the selection rules for
// an archive that was accepted: member name (cleaned) to target.
func expectedSelection(ents []ent, sel Selection) map[string]string {
	want := map[string]string{}
	if sel.Files != nil {
		for k, v := range sel.Files {
			want[path.Clean(k)] = path.Clean(v)
		}
		return want
	}
	var include []string
	for _, inc := range sel.Include {
		include = append(include, path.Clean(inc))
	}
	for _, e := range ents {
		if e.typ != tar.TypeReg {
			continue
		}
		name := path.Clean(e.name)
		parts := strings.Split(name, "/")
		if len(parts) <= sel.Strip {
			continue
		}
		rel := strings.Join(parts[sel.Strip:], "/")
		if len(include) > 0 && !slices.Contains(include, rel) {
			continue
		}
		want[name] = path.Join(path.Clean(sel.To), rel)
	}
	return want
}
