package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/nodeprov/nodeprov/stages/host/treetest"
)

// Converge cases, as Ignition's blackbox tests write them: a spec, the
// tree the root starts with (in), and what the paths the case is about must
// hold after `nodeprov apply` (out). Every case also proves the rest of the
// promise: the first apply exits 0, a second apply changes nothing, `check`
// finds no drift, and no path that in laid out and out does not name was
// touched. Adding a case is adding a row.

// want is what a path must hold after the apply.
type want struct {
	kind     string // file, dir, symlink, absent
	mode     os.FileMode
	contents string // files
	target   string // symlinks
}

func wFile(mode os.FileMode, contents string) want {
	return want{kind: "file", mode: mode, contents: contents}
}
func wDir(mode os.FileMode) want { return want{kind: "dir", mode: mode} }
func wLink(target string) want   { return want{kind: "symlink", target: target} }
func wAbsent() want              { return want{kind: "absent"} }
func (w want) String() string {
	return fmt.Sprintf("%s %04o %q%s", w.kind, w.mode, w.contents, w.target)
}
func convergeSpec(body string) string {
	return "apiVersion: nodeprov/v1alpha1\nkind: Node\nmetadata: {name: converge}\n" + body
}

var convergeCases = []struct {
	name string
	spec string
	in   map[string]string // treetest.Write layout
	out  map[string]want   // in-root path (no leading /) -> what it holds
}{
	{
		name: "files on an empty root",
		spec: `files:
  - {path: /etc/motd, contents: "hello\n"}
  - {path: /etc/nodeprov/token, mode: "0600", contents: "t0ken\n"}
  - {path: /var/lib/data, type: directory, mode: "0750"}
  - {path: /usr/local/bin/kubectl-alias, type: symlink, target: /usr/bin/kubectl}
`,
		out: map[string]want{
			"etc/motd":                    wFile(0o644, "hello\n"),
			"etc/nodeprov/token":          wFile(0o600, "t0ken\n"),
			"var/lib/data":                wDir(0o750),
			"usr/local/bin/kubectl-alias": wLink("/usr/bin/kubectl"),
		},
	},
	{
		name: "a changed file is replaced, a matching one kept, neighbours untouched",
		spec: `files:
  - {path: /etc/motd, contents: "new\n"}
  - {path: /etc/issue, contents: "same\n"}
`,
		in: map[string]string{"etc/motd": "old\n", "etc/issue": "same\n", "etc/hostname": "node-1\n"},
		out: map[string]want{
			"etc/motd":     wFile(0o644, "new\n"),
			"etc/issue":    wFile(0o644, "same\n"),
			"etc/hostname": wFile(0o644, "node-1\n"),
		},
	},
	{
		name: "a symlink in the way of a file is replaced by the file",
		spec: `files:
  - {path: /etc/resolv.conf, contents: "nameserver 10.0.0.2\n"}
`,
		in:  map[string]string{"etc/resolv.conf": "-> ../run/systemd/resolve/stub-resolv.conf"},
		out: map[string]want{"etc/resolv.conf": wFile(0o644, "nameserver 10.0.0.2\n")},
	},
	{
		name: "kernel settings persisted for boot, an operator's own sysctl file kept",
		spec: `kernel:
  modules: [overlay, br_netfilter]
  sysctl: {net.ipv4.ip_forward: "1"}
`,
		in: map[string]string{"etc/sysctl.d/10-operator.conf": "vm.swappiness = 10\n"},
		out: map[string]want{
			"etc/modules-load.d/nodeprov.conf": wFile(0o644, "# Managed by nodeprov: edits are overwritten by the next apply.\nbr_netfilter\noverlay\n"),
			"etc/sysctl.d/10-operator.conf":    wFile(0o644, "vm.swappiness = 10\n"),
		},
	},
	{
		name: "a unit written, enabled offline and its drop-in placed",
		spec: `units:
  - name: hello.service
    enabled: true
    contents: |
      [Unit]
      Description=hello
      [Service]
      ExecStart=/bin/true
      [Install]
      WantedBy=multi-user.target
    dropins:
      - {name: 10-env.conf, contents: "[Service]\nEnvironment=A=1\n"}
`,
		out: map[string]want{
			"etc/systemd/system/multi-user.target.wants/hello.service": wLink("/etc/systemd/system/hello.service"),
			"etc/systemd/system/hello.service.d/10-env.conf":           wFile(0o644, "[Service]\nEnvironment=A=1\n"),
		},
	},
	{
		name: "a unit disabled: its enablement removed, its file kept",
		spec: `units:
  - {name: old.service, enabled: false}
`,
		in: map[string]string{
			"etc/systemd/system/old.service":                         "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
			"etc/systemd/system/multi-user.target.wants/old.service": "-> /etc/systemd/system/old.service",
		},
		out: map[string]want{
			"etc/systemd/system/multi-user.target.wants/old.service": wAbsent(),
			"etc/systemd/system/old.service":                         wFile(0o644, "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"),
			// systemctl disable removes the emptied .wants directory too.
			"etc/systemd/system/multi-user.target.wants": wAbsent(),
		},
	},
}

func TestConverge(t *testing.T) {
	for _, tc := range convergeCases {
		t.Run(tc.name, func(t *testing.T) {
			root := sandbox(t)
			treetest.Write(t, root, tc.in)
			before := treetest.Take(t, root)
			spec := writeSpec(t, convergeSpec(tc.spec))

			first := runNodeprov(t, "", "apply", "--root", root, "-o", "json", spec)
			if rep := parseReport(t, first.stdout); first.code != 0 || !rep.OK || rep.Changed == 0 {
				t.Fatalf("apply: %s", first)
			}
			for p, w := range tc.out {
				if got := describePath(t, filepath.Join(root, p), w); got != w {
					t.Errorf("/%s holds %s, want %s", p, got, w)
				}
			}
			// What the root held and the case does not name is untouched
			// (parents of new paths may be new directories).
			after := treetest.Take(t, root)
			for p, e := range before {
				if _, named := tc.out[p]; !named && after[p] != e {
					t.Errorf("/%s was changed: %s -> %s", p, e, after[p])
				}
			}

			again := runNodeprov(t, "", "apply", "--root", root, "-o", "json", spec)
			if rep := parseReport(t, again.stdout); again.code != 0 || rep.Changed != 0 {
				t.Errorf("second apply changed %d:\n%s", rep.Changed, again)
			}
			if c := runNodeprov(t, "", "check", "--root", root, spec); c.code != 0 {
				t.Errorf("check after apply: %s", c)
			}
		})
	}
}

// describePath reads what p holds, in want's terms (the contents only of
// a file, when w asks about a file).
func describePath(t *testing.T, p string, w want) want {
	t.Helper()
	fi, err := os.Lstat(p)
	switch {
	case os.IsNotExist(err):
		return wAbsent()
	case err != nil:
		t.Fatal(err)
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			t.Fatal(err)
		}
		return wLink(target)
	case fi.IsDir():
		return wDir(fi.Mode().Perm())
	case fi.Mode().IsRegular():
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return wFile(fi.Mode().Perm(), string(data))
	}
	return want{kind: fi.Mode().Type().String()}
}
