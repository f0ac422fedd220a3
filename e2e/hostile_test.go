package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"unicode/utf8"

	"github.com/nodeprov/nodeprov/stages/host/treetest"
)

// This file runs hostile inputs through the real binary: malicious
// archives, checksum files and specs, and target roots with symlinks planted
// where nodeprov writes. Every case checks a clear error (exit code and a
// message naming the problem), that nothing changed outside the intended
// destinations (a canary directory next to the root, the root itself and
// the host's own directories are snapshotted before and after), and prints
// one row of the table `case | outcome`. netfault_test.go shares the
// helpers at the top of this file.

// ---- shared helpers -------------------------------------------------------

// outcomeTable collects one outcome per case and prints the table to
// stdout when the test ends (shown by `go test -v` and on failure).
type outcomeTable struct {
	title string
	mu    sync.Mutex
	names []string
	rows  map[string]string
}

func newOutcomeTable(t *testing.T, title string) *outcomeTable {
	o := &outcomeTable{title: title, rows: map[string]string{}}
	t.Cleanup(o.print)
	return o
}

// run runs one case as a subtest; f returns the outcome to show. A case
// whose assertions failed is shown as FAIL with that outcome.
func (o *outcomeTable) run(t *testing.T, name string, parallel bool, f func(t *testing.T) string) {
	t.Helper()
	o.mu.Lock()
	o.names = append(o.names, name)
	o.mu.Unlock()
	t.Run(name, func(t *testing.T) {
		if parallel {
			t.Parallel()
		}
		outcome := "(no outcome)"
		defer func() {
			if t.Failed() {
				outcome = "FAIL: " + outcome
			}
			o.mu.Lock()
			o.rows[name] = outcome
			o.mu.Unlock()
		}()
		outcome = f(t)
	})
}

func (o *outcomeTable) print() {
	o.mu.Lock()
	defer o.mu.Unlock()
	width := len("case")
	for _, n := range o.names {
		width = max(width, utf8.RuneCountInString(n))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s\n%-*s | outcome\n%s-|-%s\n", o.title, width, "case", strings.Repeat("-", width), strings.Repeat("-", 60))
	for _, n := range o.names {
		out, ok := o.rows[n]
		if !ok {
			continue // filtered out by -run
		}
		fmt.Fprintf(&b, "%-*s | %s\n", width, n, out)
	}
	fmt.Print(b.String())
}

// fsTree describes paths ("/etc/x") by a line each: a sandbox tree as
// treetest describes it (snapshotFSTree), or the host's own state
// (hostStateSnapshot).
type fsTree map[string]string

func snapshotFSTree(t *testing.T, dir string) fsTree {
	t.Helper()
	out := fsTree{}
	for p, e := range treetest.Take(t, dir) {
		out["/"+p] = e.String()
	}
	return out
}

// changes lists the paths that differ between two snapshots.
func (before fsTree) changes(after fsTree) []string {
	var out []string
	for _, p := range slices.Sorted(maps.Keys(after)) {
		if b, ok := before[p]; !ok {
			out = append(out, "+"+p+" ("+after[p]+")")
		} else if b != after[p] {
			out = append(out, "~"+p+" ("+b+" => "+after[p]+")")
		}
	}
	for _, p := range slices.Sorted(maps.Keys(before)) {
		if _, ok := after[p]; !ok {
			out = append(out, "-"+p+" ("+before[p]+")")
		}
	}
	return out
}

// changedPath is the path of an entry returned by changes.
func changedPath(c string) string {
	p, _, _ := strings.Cut(c[1:], " (")
	return p
}

// hostWriteDirs are the host's own copies of the places nodeprov writes into
// under a root: a run against a sandbox root must never touch them.
var hostWriteDirs = []string{
	"/etc/sysctl.d", "/etc/modules-load.d", "/etc/containerd", "/etc/cni", "/etc/crictl.yaml",
	"/etc/systemd/system", "/etc/machine-id", "/etc/nodeprov", "/usr/local/bin", "/usr/local/sbin",
	"/opt/cni", "/var/cache/nodeprov", "/var/lib/nodeprov", "/run/nodeprov.lock",
}

// hostStateSnapshot records metadata (not contents: some are large binaries) of
// hostWriteDirs, and the live sysctl the specs set.
func hostStateSnapshot(t *testing.T) fsTree {
	t.Helper()
	out := fsTree{}
	for _, top := range hostWriteDirs {
		filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				out[p] = "error " + err.Error()
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			st := info.Sys().(*syscall.Stat_t)
			out[p] = fmt.Sprintf("%v %d:%d %d %d.%d ino %d", info.Mode(), st.Uid, st.Gid, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ino)
			return nil
		})
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err == nil {
		out["sysctl net.ipv4.ip_forward"] = strings.TrimSpace(string(b))
	}
	return out
}

func checkHostStateUnchanged(t *testing.T, before fsTree) {
	t.Helper()
	if c := before.changes(hostStateSnapshot(t)); len(c) > 0 {
		t.Errorf("the host changed:\n  %s", strings.Join(c, "\n  "))
	}
}

// loopbackFiles serves fixed bytes by path on a loopback server and counts
// the requests for each path.
type loopbackFiles struct {
	*httptest.Server
	mu       sync.Mutex
	files    map[string][]byte
	requests map[string]int
}

func serveLoopbackFiles(t *testing.T) *loopbackFiles {
	t.Helper()
	s := &loopbackFiles{files: map[string][]byte{}, requests: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests[r.URL.Path]++
		data, ok := s.files[r.URL.Path]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.Write(data)
	}))
	t.Cleanup(s.Close)
	return s
}

// put serves data at p and returns its URL.
func (s *loopbackFiles) put(p string, data []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[p] = data
	return s.URL + p
}

// output is everything the run printed.
func (r result) output() string { return r.stdout + r.stderr }

// headline is the line of the output that states the error: the
// "apply failed:" line, or the first spec diagnostic; shortened for the
// table.
func (r result) headline() string {
	lines := strings.Split(r.output(), "\n")
	pick := ""
	for _, l := range lines {
		if strings.HasPrefix(l, "apply failed: ") {
			pick = strings.TrimPrefix(l, "apply failed: ")
			break
		}
	}
	if pick == "" {
		for _, l := range lines {
			if strings.Contains(l, ".yaml:") && !strings.HasPrefix(strings.TrimSpace(l), "|") {
				_, pick, _ = strings.Cut(l, ".yaml:")
				break
			}
		}
	}
	if pick == "" && len(lines) > 0 {
		pick = lines[0]
	}
	for _, r := range headlineNoise {
		pick = r.re.ReplaceAllString(pick, r.with)
	}
	return shortenText(pick, 160)
}

// headlineNoise are the parts of messages that differ between runs (temp
// directories, loopback ports), replaced for the table.
var headlineNoise = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`/tmp/[^"\s]*?/canary`), "<canary>"},
	{regexp.MustCompile(`/tmp/[^"\s]*?/root`), "<root>"},
	{regexp.MustCompile(`/tmp/[^"\s]*?/node\.yaml`), "node.yaml"},
	{regexp.MustCompile(`/tmp/Test[^"\s:]*/`), "<tmp>/"},
	{regexp.MustCompile(`(https?)://(127\.0\.0\.\d+|localhost):\d+`), "$1://$2:<port>"},
	{regexp.MustCompile(`^fetch: (download )?downloads\[\d+\]: `), ""},
}

// shortenText cuts s to at most n runes, marking the cut.
func shortenText(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// maxErrorOutput bounds what a refused input may print: an error that
// echoes megabytes of hostile input into a terminal or cloud-init log is
// not a clear error.
const maxErrorOutput = 64 << 10

// anyFailure is the code for wantRefused that accepts exit 1 (the run
// failed) or 2 (the spec is invalid).
const anyFailure = -1

// wantRefused checks a run that must fail with exit code code and an
// output naming the problem (every part of want, case-insensitively).
func wantRefused(t *testing.T, r result, code int, want ...string) {
	t.Helper()
	if r.code != code && !(code == anyFailure && (r.code == 1 || r.code == 2)) {
		t.Errorf("exit %d, want %d\n%s", r.code, code, shortenText(r.output(), 3000))
	}
	out := strings.ToLower(r.output())
	for _, w := range want {
		if !strings.Contains(out, strings.ToLower(w)) {
			t.Errorf("output does not name the problem: want %q in\n%s", w, shortenText(r.output(), 3000))
		}
	}
	if n := len(r.output()); n > maxErrorOutput {
		t.Errorf("the error output is %d bytes (limit %d): hostile input is echoed unbounded:\n%s", n, maxErrorOutput, shortenText(r.output(), 400))
	}
}

// bookkeepingPaths are nodeprov's own files in a root, written even by a run
// that fails: the lock, the last-run record and the download cache.
var bookkeepingPaths = []string{"/run/nodeprov.lock", "/var/lib/nodeprov/last-run.json", "/var/cache/nodeprov"}

// allowedChange reports whether a change at p is nodeprov's bookkeeping, one of
// the intended destinations, or a directory on the way to one of them.
func allowedChange(p string, intended []string) bool {
	for _, d := range append(slices.Clone(bookkeepingPaths), intended...) {
		if p == d || strings.HasPrefix(p, d+"/") || strings.HasPrefix(d, p+"/") {
			return true
		}
	}
	return false
}

// canarySandbox is a root and, next to it, a canary directory with a
// file in it: what hostile inputs aim at.
type canarySandbox struct {
	root, canary string
}

func newCanarySandbox(t *testing.T) canarySandbox {
	t.Helper()
	base := t.TempDir()
	s := canarySandbox{root: filepath.Join(base, "root"), canary: filepath.Join(base, "canary")}
	for _, d := range []string{s.root, s.canary, filepath.Join(s.canary, "bin")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.canary, "victim"), []byte("canary: must never change\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// relFrom is the relative path from the host directory of the in-root
// directory dir to the canary: what "../" tricks aim for.
func (s canarySandbox) relFrom(dir string) string {
	rel, err := filepath.Rel(filepath.Join(s.root, dir), s.canary)
	if err != nil {
		panic(err)
	}
	return rel
}

// fsGuard snapshots the canary and the root; check verifies afterwards that
// the canary is unchanged, that the root changed only at allowed paths, and
// that nothing dangerous (setuid or setgid files, devices, FIFOs, links
// leaving the root) appeared in it.
type fsGuard struct {
	s              canarySandbox
	canary, rootFS fsTree
}

func (s canarySandbox) fsGuard(t *testing.T) fsGuard {
	t.Helper()
	return fsGuard{s: s, canary: snapshotFSTree(t, s.canary), rootFS: snapshotFSTree(t, s.root)}
}

// check returns the root's changes.
func (g fsGuard) check(t *testing.T, intended ...string) []string {
	t.Helper()
	if c := g.canary.changes(snapshotFSTree(t, g.s.canary)); len(c) > 0 {
		t.Errorf("the canary outside the root changed:\n  %s", strings.Join(c, "\n  "))
	}
	after := snapshotFSTree(t, g.s.root)
	changes := g.rootFS.changes(after)
	for _, c := range changes {
		if !allowedChange(changedPath(c), intended) {
			t.Errorf("unexpected change in the root: %s", c)
		}
	}
	for p, desc := range after {
		if _, old := g.rootFS[p]; old {
			continue
		}
		info, err := os.Lstat(filepath.Join(g.s.root, p))
		if err != nil {
			continue
		}
		switch m := info.Mode(); {
		case m&(fs.ModeSetuid|fs.ModeSetgid) != 0:
			t.Errorf("setuid/setgid file written: %s %s", p, desc)
		case m&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0:
			t.Errorf("special file written: %s %s", p, desc)
		case m&fs.ModeSymlink != 0 && !slices.Contains(intended, p):
			t.Errorf("symlink written: %s %s", p, desc)
		}
	}
	return changes
}

// tarEntry is one entry of a test archive.
type tarEntry struct {
	hdr  tar.Header
	data []byte
}

func tFile(name string, mode int64, data string) tarEntry {
	return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(data))}, data: []byte(data)}
}

func tLink(typ byte, name, target string) tarEntry {
	return tarEntry{hdr: tar.Header{Name: name, Typeflag: typ, Mode: 0o777, Linkname: target}}
}

func tSpecial(typ byte, name string) tarEntry {
	return tarEntry{hdr: tar.Header{Name: name, Typeflag: typ, Mode: 0o666, Devmajor: 1, Devminor: 3}}
}

// makeTarGz builds a .tar.gz of the entries (GNU format: long names,
// anything tar can say).
func makeTarGz(t *testing.T, tarEntries ...tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	tw := tar.NewWriter(zw)
	for _, e := range tarEntries {
		h := e.hdr
		h.Format = tar.FormatGNU
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %q: %v", h.Name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

const hostileSpecHeader = "apiVersion: nodeprov/v1alpha1\nkind: Node\n"

// ---- the hostile inputs ---------------------------------------------------

// TestHostileInputs runs every hostile case through the binary and prints
// the table.
func TestHostileInputs(t *testing.T) {
	requireRoot(t)
	host := hostStateSnapshot(t)
	table := newOutcomeTable(t, "hostile inputs")
	t.Cleanup(func() { checkHostStateUnchanged(t, host) })
	t.Run("archives", func(t *testing.T) { hostileArchives(t, table) })
	t.Run("checksums", func(t *testing.T) { hostileChecksums(t, table) })
	t.Run("specs", func(t *testing.T) { hostileSpecs(t, table) })
	t.Run("roots", func(t *testing.T) { hostileRoots(t, table) })
}

// archiveCase is a malicious archive, pinned by its digest (the archive is
// what the publisher signed: only nodeprov's own checks stand between it
// and the root), installed as a tree under /opt/cni/bin unless extract says
// otherwise.
type archiveCase struct {
	name    string
	build   func(t *testing.T, s canarySandbox) []byte
	extract string
	want    []string // parts of the error; nil: must install
	// installed checks a case that may install; it returns the outcome.
	installed func(t *testing.T, s canarySandbox, r result) string
}

func tarEntries(es ...tarEntry) func(*testing.T, canarySandbox) []byte {
	return func(t *testing.T, _ canarySandbox) []byte { return makeTarGz(t, es...) }
}

func archiveCases() []archiveCase {
	bridge := tFile("bridge", 0o755, "#!/bin/sh\necho bridge\n")
	setid := func(mode int64, what string) archiveCase {
		return archiveCase{
			name:  fmt.Sprintf("archive: %s member (mode %04o)", what, mode),
			build: tarEntries(tFile("bridge", mode, "#!/bin/sh\necho "+what+"\n")),
			// The design says modes are masked; stages/archive refuses
			// the member. Either is safe: what must never happen is a
			// setuid/setgid file in the root (fsGuard.check).
			installed: func(t *testing.T, s canarySandbox, r result) string {
				if r.code != 0 {
					wantRefused(t, r, 1, "bridge", "set"+strings.TrimPrefix(what, "set"))
					return "refused (exit 1): " + r.headline()
				}
				info, err := os.Stat(filepath.Join(s.root, "opt/cni/bin/bridge"))
				if err != nil {
					t.Fatal(err)
				}
				if info.Mode() != 0o755 {
					t.Errorf("installed with mode %v, want -rwxr-xr-x", info.Mode())
				}
				return fmt.Sprintf("installed with the mode masked: %04o -> %v", mode, info.Mode())
			},
		}
	}
	return []archiveCase{
		{name: "archive: control (benign tree)", build: tarEntries(bridge, tFile("host-local", 0o644, "x")),
			installed: func(t *testing.T, s canarySandbox, r result) string {
				if r.code != 0 {
					t.Fatalf("benign archive not installed:\n%s", r.output())
				}
				for name, mode := range map[string]fs.FileMode{"bridge": 0o755, "host-local": 0o644} {
					info, err := os.Stat(filepath.Join(s.root, "opt/cni/bin", name))
					if err != nil || info.Mode() != mode {
						t.Errorf("%s: %v %v, want mode %v", name, info, err, mode)
					}
				}
				return "installed 2 files (control: the harness sees writes)"
			}},
		{name: "archive: path traversal (../ to the canary)",
			build: func(t *testing.T, s canarySandbox) []byte {
				return makeTarGz(t, bridge, tFile(s.relFrom("/opt/cni/bin")+"/pwned", 0o755, "pwned"))
			},
			want: []string{"pwned", "unsafe name", `".." component`}},
		{name: "archive: path traversal inside a named member", extract: "{files: {bin/tool: /usr/local/bin/tool}}",
			build: func(t *testing.T, s canarySandbox) []byte {
				return makeTarGz(t, tFile("bin/tool", 0o755, "tool"), tFile("bin/../"+s.relFrom("/usr/local/bin")+"/pwned", 0o755, "pwned"))
			},
			want: []string{"unsafe name", `".." component`}},
		{name: "archive: absolute path",
			build: func(t *testing.T, s canarySandbox) []byte {
				return makeTarGz(t, bridge, tFile(s.canary+"/pwned", 0o755, "pwned"))
			},
			want: []string{"pwned", "absolute path"}},
		{name: "archive: symlink escape",
			build: func(t *testing.T, s canarySandbox) []byte {
				return makeTarGz(t, bridge, tLink(tar.TypeSymlink, "loopback", s.canary+"/victim"))
			},
			want: []string{`"loopback"`, "symlink", "only regular files"}},
		{name: "archive: symlink, then a file written through it", extract: "{to: /opt/cni/bin, include: [plugins/pwned]}",
			build: func(t *testing.T, s canarySandbox) []byte {
				return makeTarGz(t, tLink(tar.TypeSymlink, "plugins", s.canary), tFile("plugins/pwned", 0o755, "pwned"))
			},
			want: []string{`"plugins/pwned"`, `its parent "plugins" is a symlink`, "refusing to write through it"}},
		{name: "archive: file, then a symlink over its directory", extract: "{to: /opt/cni/bin, include: [plugins/pwned]}",
			build: func(t *testing.T, s canarySandbox) []byte {
				return makeTarGz(t, tFile("plugins/pwned", 0o755, "pwned"), tLink(tar.TypeSymlink, "plugins", s.canary))
			},
			want: []string{`"plugins/pwned"`, "symlink", "refusing to write through it"}},
		{name: "archive: hardlink escape",
			build: func(t *testing.T, s canarySandbox) []byte {
				return makeTarGz(t, bridge, tLink(tar.TypeLink, "victim", s.canary+"/victim"))
			},
			want: []string{`"victim"`, "hard link", "only regular files"}},
		{name: "archive: hardlink, then a file written through it",
			build: func(t *testing.T, s canarySandbox) []byte {
				return makeTarGz(t, tLink(tar.TypeLink, "bridge", s.relFrom("/opt/cni/bin")+"/victim"), tFile("bridge", 0o644, "overwritten"))
			},
			want: []string{`"bridge"`, "hard link"}},
		{name: "archive: character device", build: tarEntries(bridge, tSpecial(tar.TypeChar, "null")),
			want: []string{`"null"`, "character device"}},
		{name: "archive: block device", build: tarEntries(bridge, tSpecial(tar.TypeBlock, "sda")),
			want: []string{`"sda"`, "block device"}},
		{name: "archive: FIFO", build: tarEntries(bridge, tSpecial(tar.TypeFifo, "fifo")),
			want: []string{`"fifo"`, "FIFO"}},
		setid(0o4755, "setuid"),
		setid(0o2755, "setgid"),
		{name: "archive: duplicate members", build: tarEntries(bridge, tFile("bridge", 0o755, "second copy")),
			want: []string{`"bridge"`, "more than once"}},
		{name: "archive: gzip bomb (64 MiB of zeros in 64 KiB)",
			build: func(t *testing.T, _ canarySandbox) []byte {
				return makeTarGz(t, tarEntry{hdr: tar.Header{Name: "bridge", Typeflag: tar.TypeReg, Mode: 0o755, Size: 64 << 20}, data: make([]byte, 64<<20)})
			},
			want: []string{"compression ratio", "bomb"}},
		{name: "archive: huge member count (10001 entries)",
			build: func(t *testing.T, _ canarySandbox) []byte {
				es := make([]tarEntry, 10001)
				for i := range es {
					es[i] = tFile(fmt.Sprintf("f%05d", i), 0o644, "")
				}
				return makeTarGz(t, es...)
			},
			want: []string{"more than 10000 members"}},
		{name: "archive: truncated gzip",
			build: func(t *testing.T, _ canarySandbox) []byte {
				full := makeTarGz(t, tFile("bridge", 0o755, strings.Repeat("truncated archive ", 4096)))
				return full[:len(full)*2/3]
			},
			want: []string{"truncated gzip stream"}},
		{name: "archive: data hidden after the end marker",
			build: func(t *testing.T, _ canarySandbox) []byte {
				var b bytes.Buffer
				zw := gzip.NewWriter(&b)
				tw := tar.NewWriter(zw)
				tw.WriteHeader(&tar.Header{Name: "bridge", Typeflag: tar.TypeReg, Mode: 0o755, Size: 2})
				tw.Write([]byte("ok"))
				tw.Close()
				zw.Write(append(make([]byte, 512), "hidden entry"...))
				zw.Close()
				return b.Bytes()
			},
			want: []string{"data after the end of the tar archive"}},
	}
}

func hostileArchives(t *testing.T, table *outcomeTable) {
	srv := serveLoopbackFiles(t)
	for i, c := range archiveCases() {
		table.run(t, c.name, true, func(t *testing.T) string {
			s := newCanarySandbox(t)
			data := c.build(t, s)
			url := srv.put(fmt.Sprintf("/%d/plugins.tgz", i), data)
			extract := c.extract
			if extract == "" {
				extract = "{to: /opt/cni/bin}"
			}
			spec := writeSpec(t, fmt.Sprintf("%sdownloads:\n  - url: %s\n    sha256: %s\n    extract: %s\n", hostileSpecHeader, url, sha256hex(data), extract))
			g := s.fsGuard(t)
			r := runNodeprov(t, "", "apply", "--root", s.root, "--stages", "fetch,install", "--idle-timeout", "5s", spec)
			g.check(t, "/opt/cni/bin", "/usr/local/bin/tool", "/var/lib/nodeprov/installed.json")
			if c.installed != nil {
				return c.installed(t, s, r)
			}
			wantRefused(t, r, 1, c.want...)
			for _, p := range []string{"opt/cni/bin", "usr/local/bin"} {
				if des, _ := os.ReadDir(filepath.Join(s.root, p)); len(des) > 0 {
					t.Errorf("refused archive, but /%s holds %d entries", p, len(des))
				}
			}
			return "refused (exit 1): " + r.headline()
		})
	}
}

// hostileChecksums serves a good artifact with a malicious checksum file.
func hostileChecksums(t *testing.T, table *outcomeTable) {
	srv := serveLoopbackFiles(t)
	tool := []byte("#!/bin/sh\necho tool\n")
	good, other := sha256hex(tool), sha256hex([]byte("something else"))
	cases := []struct {
		name, sums string
		want       []string // nil: installs
	}{
		{"checksum: control (one matching line)", good + "  tool\n", nil},
		{"checksum: hash for another file name", good + "  tool-other\n", []string{"tool.sha256", `"tool"`}},
		{"checksum: right name, another file's hash", other + "  tool\n", []string{"digest mismatch", "want sha256:" + other}},
		{"checksum: several matches that disagree", good + "  tool\n" + other + "  ./tool\n", []string{"tool.sha256", "tool"}},
		{"checksum: exact and base-name matches disagree", other + "  dist/tool\n" + good + "  tool\n" + other + "  other/tool\n", nil},
		{"checksum: malformed line next to a match", good + "  tool\nthis is not a checksum line\n", []string{"tool.sha256", "line 2"}},
		{"checksum: hash of the wrong length", good[:63] + "  tool\n", []string{"tool.sha256"}},
		{"checksum: two bare hashes", good + "\n" + other + "\n", []string{"tool.sha256"}},
		{"checksum: oversized file (2 MiB)", good + "  tool\n" + strings.Repeat("#"+strings.Repeat(" ", 1022)+"\n", 2048), []string{"tool.sha256", "size cap"}},
	}
	for i, c := range cases {
		table.run(t, c.name, true, func(t *testing.T) string {
			s := newCanarySandbox(t)
			url := srv.put(fmt.Sprintf("/%d/tool", i), tool)
			sums := srv.put(fmt.Sprintf("/%d/tool.sha256", i), []byte(c.sums))
			spec := writeSpec(t, fmt.Sprintf("%sdownloads:\n  - url: %s\n    checksum: {url: %s}\n    path: /usr/local/bin/tool\n    mode: \"0755\"\n", hostileSpecHeader, url, sums))
			g := s.fsGuard(t)
			r := runNodeprov(t, "", "apply", "--root", s.root, "--stages", "fetch,install", "--idle-timeout", "5s", spec)
			g.check(t, "/usr/local/bin/tool", "/var/lib/nodeprov/installed.json")
			installed, _ := os.ReadFile(filepath.Join(s.root, "usr/local/bin/tool"))
			if c.want == nil {
				if r.code != 0 || !bytes.Equal(installed, tool) {
					t.Fatalf("want the verified tool installed:\n%s", r.output())
				}
				return "installed the verified artifact (same-origin digest)"
			}
			wantRefused(t, r, 1, c.want...)
			if installed != nil {
				t.Errorf("refused checksum file, but the tool was installed")
			}
			return "refused (exit 1): " + r.headline()
		})
	}
}

// hostileSpecs loads malicious specs: they must be refused before the run
// touches the root at all.
func hostileSpecs(t *testing.T, table *outcomeTable) {
	bomb := "containerd:\n  runtimes:\n    x:\n      type: io.containerd.runc.v2\n      options:\n" +
		"        a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
	for i := 1; i < 10; i++ {
		bomb += fmt.Sprintf("        a%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", "))
	}
	optionsAt := func(v string) string {
		return "containerd:\n  runtimes:\n    x:\n      type: io.containerd.runc.v2\n      options: " + v + "\n"
	}
	cases := []struct {
		name string
		src  []byte
		code int
		want []string
	}{
		{"spec: YAML alias bomb (10^10 nodes)", []byte(hostileSpecHeader + bomb), 2, []string{"alias"}},
		{"spec: deep nesting (300 flow mappings)", []byte(hostileSpecHeader + optionsAt(strings.Repeat("{a: ", 300)+"1"+strings.Repeat("}", 300))), 2, []string{"nesting deeper than"}},
		{"spec: deep nesting (20000 flow sequences)", []byte(hostileSpecHeader + optionsAt(strings.Repeat("[", 20000)+strings.Repeat("]", 20000))), 2, []string{"max depth"}},
		{"spec: larger than the 16 MiB limit", []byte(hostileSpecHeader + "metadata: {name: " + strings.Repeat("a", 16<<20) + "}\n"), 2, []string{"the limit is 16777216"}},
		{"spec: huge scalar (4 MiB name)", []byte(hostileSpecHeader + "metadata: {name: " + strings.Repeat("a", 4<<20) + "}\n"), 2, []string{"metadata.name"}},
		{"spec: huge key (4 MiB)", []byte(hostileSpecHeader + strings.Repeat("k", 4<<20) + ": 1\n"), 2, []string{"YAML"}},
		{"spec: huge path (1 MiB)", []byte(hostileSpecHeader + "files:\n  - {path: /" + strings.Repeat("p", 1<<20) + ", contents: x}\n"), anyFailure, []string{"too long"}},
		{"spec: file path with ..", []byte(hostileSpecHeader + "files:\n  - {path: /etc/../../../canary/victim, contents: x}\n"), 2, []string{"files[0].path", "not clean"}},
		{"spec: download path with ..", []byte(hostileSpecHeader + "downloads:\n  - {url: \"http://127.0.0.1:1/x\", sha256: " + strings.Repeat("a", 64) + ", path: /usr/local/bin/../../../../canary/x}\n"), 2, []string{"downloads[0].path", "not clean"}},
		{"spec: extract target with ..", []byte(hostileSpecHeader + "downloads:\n  - {url: \"http://127.0.0.1:1/x.tgz\", sha256: " + strings.Repeat("a", 64) + ", extract: {files: {tool: /usr/local/../../../canary/tool}}}\n"), 2, []string{"downloads[0].extract", "not clean"}},
		{"spec: extract member with ..", []byte(hostileSpecHeader + "downloads:\n  - {url: \"http://127.0.0.1:1/x.tgz\", sha256: " + strings.Repeat("a", 64) + ", extract: {files: {../../etc/shadow: /usr/local/bin/tool}}}\n"), 2, []string{"downloads[0].extract", ".."}},
		{"spec: extract directory with ..", []byte(hostileSpecHeader + "downloads:\n  - {url: \"http://127.0.0.1:1/x.tgz\", sha256: " + strings.Repeat("a", 64) + ", extract: {to: /opt/../../canary}}\n"), 2, []string{"downloads[0].extract.to", "not clean"}},
		{"spec: escaped NUL in a path", []byte(hostileSpecHeader + "files:\n  - {path: \"/etc/x\\0y\", contents: x}\n"), 2, []string{"files[0].path", "NUL"}},
		{"spec: raw NUL byte", []byte(hostileSpecHeader + "metadata: {name: a\x00b}\n"), 2, []string{"NUL byte"}},
		{"spec: not UTF-8", []byte(hostileSpecHeader + "metadata: {name: \xff\xfe}\n"), 2, []string{"not valid UTF-8"}},
		{"spec: UTF-16", append([]byte{0xff, 0xfe}, utf16le(hostileSpecHeader)...), 2, []string{"UTF-8"}},
	}
	for _, c := range cases {
		table.run(t, c.name, true, func(t *testing.T) string {
			s := newCanarySandbox(t)
			p := filepath.Join(t.TempDir(), "node.yaml")
			if err := os.WriteFile(p, c.src, 0o644); err != nil {
				t.Fatal(err)
			}
			g := s.fsGuard(t)
			r := runNodeprov(t, "", "apply", "--root", s.root, p)
			changes := g.check(t)
			wantRefused(t, r, c.code, c.want...)
			if c.code == 2 && len(changes) > 0 {
				t.Errorf("an invalid spec touched the root: %v", changes)
			}
			return fmt.Sprintf("refused (exit %d): %s", r.code, r.headline())
		})
	}
}

func utf16le(s string) []byte {
	var out []byte
	for _, c := range s {
		out = append(out, byte(c), 0)
	}
	return out
}

// fullWriteSpec exercises every stage that writes into a root: kernel files,
// plain and archive downloads, the install record, files, the containerd
// config with registry hosts, runsc, CNI and proxy drop-in, a unit, and a
// machine-id to regenerate.
func fullWriteSpec(t *testing.T, srv *loopbackFiles) string {
	tool := []byte("#!/bin/sh\necho tool\n")
	tgz := makeTarGz(t, tFile("bridge", 0o755, "#!/bin/sh\necho bridge\n"), tFile("loopback", 0o755, "#!/bin/sh\necho loopback\n"))
	return fmt.Sprintf(`%skernel:
  modules: [overlay]
  sysctl: {net.ipv4.ip_forward: "1"}
machineID: {policy: regenerate, forbidden: ["%s"]}
downloads:
  - {url: %q, sha256: %s, path: /usr/local/bin/tool, mode: "0755"}
  - {url: %q, sha256: %s, path: /usr/local/sbin/runc, mode: "0755"}
  - {url: %q, sha256: %s, extract: {to: /opt/cni/bin}}
containerd:
  configVersion: 2
  cgroupDriver: cgroupfs
  runtimes:
    runsc: {type: io.containerd.runsc.v1, runscConfig: {network: none}}
  registries:
    docker.io: {mirrors: [{host: "https://mirror.example:5000"}]}
  proxy: {http: "http://proxy.example:3128", noProxy: [localhost]}
  cni: {network: bridge}
files:
  - {path: /etc/nodeprov/motd, contents: "provisioned\n"}
units:
  - name: nodeprov-e2e.service
    contents: "[Unit]\nDescription=e2e\n[Service]\nExecStart=/usr/local/bin/tool\n[Install]\nWantedBy=multi-user.target\n"
    enabled: true
    dropins: [{name: 10-env.conf, contents: "[Service]\nEnvironment=A=1\n"}]
`, hostileSpecHeader, hostileForbiddenID,
		srv.put("/tool", tool), sha256hex(tool),
		srv.put("/runc", tool), sha256hex(tool),
		srv.put("/cni.tgz", tgz), sha256hex(tgz))
}

// hostileForbiddenID is the machine-id the hostile roots start with, so that the
// machine-id stage writes /etc/machine-id and the dbus copy.
const hostileForbiddenID = "0123456789abcdef0123456789abcdef"

// seedImageRoot gives a root the files an image has before nodeprov runs.
func seedImageRoot(t *testing.T, root string) {
	t.Helper()
	for p, data := range map[string]string{
		"etc/machine-id": hostileForbiddenID + "\n",
		"etc/hostname":   "node\n",
	} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// hostileRoots plants a symlink pointing out of the root at every directory
// and every file that a clean run of fullWriteSpec writes.
func hostileRoots(t *testing.T, table *outcomeTable) {
	srv := serveLoopbackFiles(t)
	spec := writeSpec(t, fullWriteSpec(t, srv))

	// A clean run tells where nodeprov writes.
	clean := newCanarySandbox(t)
	seedImageRoot(t, clean.root)
	before := snapshotFSTree(t, clean.root)
	r := runNodeprov(t, "", "apply", "--root", clean.root, spec)
	if r.code != 0 {
		t.Fatalf("clean apply of the full spec:\n%s", r.output())
	}
	after := snapshotFSTree(t, clean.root)
	var dirs, files []string
	for _, c := range before.changes(after) {
		p := changedPath(c)
		if strings.HasPrefix(after[p], "d") {
			dirs = append(dirs, p)
		} else {
			files = append(files, p)
		}
	}
	// Directories that already existed but are written into count too.
	for _, f := range files {
		for d := path.Dir(f); d != "/"; d = path.Dir(d) {
			if !slices.Contains(dirs, d) {
				dirs = append(dirs, d)
			}
		}
	}
	slices.Sort(dirs)
	for _, must := range []string{"/usr/local/bin", "/usr/local/sbin", "/opt/cni/bin", "/etc/containerd", "/etc/containerd/certs.d",
		"/etc/sysctl.d", "/etc/modules-load.d", "/etc/systemd/system", "/etc/cni/net.d", "/var/cache/nodeprov",
		"/var/cache/nodeprov/sha256", "/var/cache/nodeprov/tmp", "/var/lib/nodeprov", "/run", "/etc"} {
		if !slices.Contains(dirs, must) {
			t.Errorf("the clean run wrote nothing under %s (dirs: %v)", must, dirs)
		}
	}

	for _, d := range dirs {
		for _, variant := range []string{"absolute", "relative"} {
			name := fmt.Sprintf("root: %s -> canary (%s)", d, variant)
			table.run(t, name, true, func(t *testing.T) string {
				s := newCanarySandbox(t)
				seedImageRoot(t, s.root)
				target := s.canary
				if variant == "relative" {
					target = s.relFrom(path.Dir(d))
				}
				plantSymlink(t, s.root, d, target)
				g := s.fsGuard(t)
				r := runNodeprov(t, "", "apply", "--root", s.root, spec)
				g.check(t, intendedExcept(files, d)...)
				if fi, err := os.Lstat(filepath.Join(s.root, d)); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
					t.Errorf("the planted symlink %s was replaced: %v %v", d, fi, err)
				}
				wantRefused(t, r, 1, d)
				return "refused (exit 1): " + r.headline()
			})
		}
	}
	for _, f := range files {
		name := fmt.Sprintf("root: %s -> canary file", hexName.ReplaceAllStringFunc(f, func(h string) string { return h[:12] + "…" }))
		table.run(t, name, true, func(t *testing.T) string {
			s := newCanarySandbox(t)
			seedImageRoot(t, s.root)
			if f == "/etc/machine-id" {
				os.Remove(filepath.Join(s.root, f))
			}
			plantSymlink(t, s.root, f, filepath.Join(s.canary, "victim"))
			g := s.fsGuard(t)
			r := runNodeprov(t, "", "apply", "--root", s.root, spec)
			g.check(t, files...)
			if r.code != 0 {
				wantRefused(t, r, 1, f)
				return fmt.Sprintf("refused (exit %d): %s", r.code, r.headline())
			}
			fi, err := os.Lstat(filepath.Join(s.root, f))
			if err != nil {
				t.Fatalf("apply succeeded but %s is gone: %v", f, err)
			}
			if fi.Mode()&fs.ModeSymlink == 0 {
				if !fi.Mode().IsRegular() || !strings.HasPrefix(after[f], "file ") {
					t.Errorf("%s is %v, the clean run wrote %s", f, fi.Mode(), after[f])
				}
				return "symlink replaced by the file (not followed), canary untouched"
			}
			l, _ := os.Readlink(filepath.Join(s.root, f))
			if l != filepath.Join(s.canary, "victim") {
				return "symlink replaced by nodeprov's own link " + l
			}
			if f == "/etc/machine-id" {
				// The machine-id stage reads the id through the root: the
				// link dangles there, so the image counts as sealed and
				// first boot generates the id. Nothing is written.
				return "left in place: dangles inside the root, so the id counts as unset (first boot generates it); nothing written"
			}
			t.Errorf("apply succeeded but left the planted symlink %s in place", f)
			return "planted symlink left in place"
		})
	}

	// Leftovers in the staging directory are cleaned up at the start of a
	// run: links among them are removed, never followed.
	table.run(t, "root: links among stale staging files", true, func(t *testing.T) string {
		s := newCanarySandbox(t)
		seedImageRoot(t, s.root)
		plantSymlink(t, s.root, "/var/cache/nodeprov/tmp/dl-999999999-stale", s.canary)
		plantSymlink(t, s.root, "/var/cache/nodeprov/tmp/leftover/victim", filepath.Join(s.canary, "victim"))
		g := s.fsGuard(t)
		r := runNodeprov(t, "", "apply", "--root", s.root, spec)
		g.check(t, files...)
		if r.code != 0 {
			t.Fatalf("apply:\n%s", shortenText(r.output(), 3000))
		}
		if es, _ := os.ReadDir(filepath.Join(s.root, "var/cache/nodeprov/tmp")); len(es) > 0 {
			t.Errorf("stale staging entries left: %d", len(es))
		}
		return "applied; the stale links were removed, not followed"
	})

	// A symlink that stays inside the root (merged-/usr style images) is
	// followed there: the control for the cases above.
	table.run(t, "root: /usr/local/bin -> /opt/bin inside the root (control)", true, func(t *testing.T) string {
		s := newCanarySandbox(t)
		seedImageRoot(t, s.root)
		if err := os.MkdirAll(filepath.Join(s.root, "opt/bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		plantSymlink(t, s.root, "/usr/local/bin", "/opt/bin")
		g := s.fsGuard(t)
		r := runNodeprov(t, "", "apply", "--root", s.root, spec)
		g.check(t, append(intendedExcept(files, "/usr/local/bin"), "/opt/bin/tool")...)
		if r.code != 0 {
			t.Fatalf("apply:\n%s", shortenText(r.output(), 3000))
		}
		if _, err := os.Stat(filepath.Join(s.root, "opt/bin/tool")); err != nil {
			t.Errorf("tool not installed through the in-root link: %v", err)
		}
		return "applied; /usr/local/bin/tool written at <root>/opt/bin/tool"
	})
}

// hexName matches a digest in a cache path, shortened in case names.
var hexName = regexp.MustCompile(`[0-9a-f]{64,}`)

// intendedExcept is the list of intended destinations minus those under
// dir (which a planted symlink makes unreachable).
func intendedExcept(files []string, dir string) []string {
	var out []string
	for _, f := range files {
		if !strings.HasPrefix(f, dir+"/") {
			out = append(out, f)
		}
	}
	return out
}

// plantSymlink makes the in-root path p a symlink to target, creating its parent
// directories and removing what is there.
func plantSymlink(t *testing.T, root, p, target string) {
	t.Helper()
	hp := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(hp), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(hp); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, hp); err != nil {
		t.Fatal(err)
	}
}
