package archive

import (
	"bytes"
	"errors"
	"io"
	"path"
	"strings"
	"testing"
)

// FuzzPlan feeds arbitrary bytes to Plan with a whole-tree selection and a
// named-files selection. It must not panic; every error must be an *Error
// (the source never fails); every accepted member must obey the rules.
func FuzzPlan(f *testing.F) {
	for _, b := range [][]byte{
		containerdRelease(f), cniRelease(f), crictlRelease(f), kataRelease(f),
		tgz(f, file("a", 0o4755, "x"), symlink("b", "/etc"), file("b/c", 0o644, "y")),
		tarBytes(f, file("plain", 0o644, "tar")),
		concatGzip(f, tarBytes(f, file("a", 0o755, "aaa"), file("b", 0o644, "bbb"))),
		[]byte("\x1f\x8b"),
		nil,
	} {
		f.Add(b)
	}
	for _, tt := range hostileCorpus() {
		if strings.Contains(tt.name, "bomb") || tt.name == "huge member count" || tt.name == "sizes add up past the total limit" {
			continue // streamed and large; the fuzzer finds small bombs itself
		}
		rc, err := tt.open(f, "/outside")()
		if err != nil {
			f.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	lim := Limits{MaxMembers: 64, MaxMemberSize: 1 << 20, MaxTotalSize: 4 << 20}
	sels := []Selection{
		{To: "/opt/x"},
		{To: "/opt/y", Strip: 1},
		{Files: map[string]string{"bin/containerd": "/usr/local/bin/containerd", "bridge": "/opt/cni/bin/bridge"}},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, sel := range sels {
			members, err := Plan(bytes.NewReader(data), sel, lim)
			if err != nil {
				var ae *Error
				if !errors.As(err, &ae) || err.Error() == "" {
					t.Fatalf("error %q (%T) is not an *Error", err, err)
				}
				if members != nil {
					t.Fatalf("members %+v returned with error %v", members, err)
				}
				continue
			}
			checkMembers(t, sel, lim, members)
		}
	})
}

// checkMembers checks accepted members against the rules, independently of
// the code that enforces them.
func checkMembers(t *testing.T, sel Selection, lim Limits, members []Member) {
	t.Helper()
	names := make(map[string]bool)
	targets := make(map[string]bool)
	var total int64
	for _, m := range members {
		n := m.Name
		switch {
		case n == "", n == ".", strings.ContainsRune(n, 0), strings.HasPrefix(n, "/"),
			path.Clean(n) != n, strings.HasPrefix(n, "./"), len(n) > maxNameLen:
			t.Fatalf("accepted member with a bad name %q", n)
		}
		for c := range strings.SplitSeq(n, "/") {
			if c == ".." {
				t.Fatalf("accepted member %q with a .. component", n)
			}
		}
		if names[n] || targets[m.Target] {
			t.Fatalf("member %q or target %s accepted twice", n, m.Target)
		}
		names[n], targets[m.Target] = true, true
		if m.Mode != 0o755 && m.Mode != 0o644 {
			t.Fatalf("member %q has mode %v", n, m.Mode)
		}
		if m.Size < 0 || m.Size > lim.MaxMemberSize || len(m.SHA256) != 64 {
			t.Fatalf("member %+v breaks the size limit or has no digest", m)
		}
		total += m.Size
		if sel.To != "" {
			if !strictlyUnder(m.Target, sel.To) || path.Clean(m.Target) != m.Target {
				t.Fatalf("member %q target %s escapes %s", n, m.Target, sel.To)
			}
		} else if sel.Files[n] != m.Target {
			t.Fatalf("member %q installed at %s, want %s", n, m.Target, sel.Files[n])
		}
	}
	if total > lim.MaxTotalSize {
		t.Fatalf("members add up to %d bytes", total)
	}
	if sel.Files != nil && len(members) != len(sel.Files) {
		t.Fatalf("got %d members for %d files", len(members), len(sel.Files))
	}
}

// strictlyUnder reports whether p is below dir (both clean and absolute);
// dir "/" has every other absolute path below it.
func strictlyUnder(p, dir string) bool {
	if dir == "/" {
		return p != "/" && strings.HasPrefix(p, "/")
	}
	return strings.HasPrefix(p, dir+"/")
}
