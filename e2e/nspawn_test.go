package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A Debian root with real systemd for the tests that boot a node in
// systemd-nspawn (nspawn_node_test.go). debootstrap makes it once; the
// result is cached as a tarball between runs of the suite, and every test
// extracts its own copy.

// debianSuite is the release the node root is made from: the host's.
const debianSuite = "bookworm"

// nodePackages are installed on top of debootstrap's minbase: systemd as
// PID 1 (systemd-sysv for poweroff and friends), dbus, cloud-init for the
// user-data tests, iproute2 for looking at the network and iptables for
// the CNI bridge plugin's masquerading when pods run in the node.
// python3-cffi-backend is only there because debootstrap's resolver does
// not follow virtual packages: cloud-init needs python3-cryptography, which
// depends on python3-cffi-backend-api-*, which only python3-cffi-backend
// provides; without it the bootstrap fails in configure.
var nodePackages = []string{"systemd", "systemd-sysv", "dbus", "cloud-init", "iproute2", "iptables", "python3-cffi-backend"}

// nodeRootRecipe changes whenever buildNodeRoot changes what the root
// holds, so that an old cached tarball is not reused.
const nodeRootRecipe = "3"

// nodeRootTarball returns the cached tarball of the Debian node root,
// building it first if needed (see cachedBuild).
func nodeRootTarball(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	for _, bin := range []string{"debootstrap", "systemd-nspawn", "nsenter", "tar"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is missing (make test installs debootstrap and systemd-container): %v", bin, err)
		}
	}
	sum := sha256.Sum256([]byte(debianSuite + "\n" + strings.Join(nodePackages, ",") + "\n" + nodeRootRecipe))
	name := fmt.Sprintf("debian-%s-node-%s", debianSuite, hex.EncodeToString(sum[:6]))
	dir := cachedBuild(t, name, func(dir string) error {
		_, err := os.Stat(filepath.Join(dir, "root.tar"))
		return err
	}, buildNodeRootTarball)
	// Roots of older recipes or package lists are not used again.
	old, _ := filepath.Glob(filepath.Join(e2eCacheDir(), "debian-"+debianSuite+"-node-*"))
	for _, o := range old {
		if !strings.HasPrefix(filepath.Base(o), name) && !strings.Contains(o, ".tmp-") {
			removeTree(o)
		}
	}
	return filepath.Join(dir, "root.tar")
}

// buildNodeRootTarball debootstraps the node root and tars it into
// out/root.tar.
func buildNodeRootTarball(ctx context.Context, out string, log io.Writer) error {
	mirror, err := debianMirror()
	if err != nil {
		return err
	}
	start := time.Now()
	root := filepath.Join(out, "root")
	defer removeTree(root)
	b, err := buildNodeRoot(ctx, root, mirror)
	log.Write(b)
	if err != nil {
		return fmt.Errorf("debootstrap of the node root from %s: %w", mirror, err)
	}
	fmt.Fprintf(log, "debootstrap %s %s from %s in %s; %d MiB\n",
		debianSuite, strings.Join(nodePackages, ","), mirror, time.Since(start).Round(time.Second), dirSize(root)>>20)
	if b, err := exec.CommandContext(ctx, "tar", "-C", root, "--one-file-system", "--numeric-owner", "--xattrs", "--xattrs-include=*",
		"-cf", filepath.Join(out, "root.tar"), ".").CombinedOutput(); err != nil {
		return fmt.Errorf("tar the node root: %w\n%s", err, b)
	}
	return nil
}

// buildNodeRoot debootstraps the root and trims what a booted test node
// does not need. It returns debootstrap's output.
func buildNodeRoot(ctx context.Context, root, mirror string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase",
		"--include="+strings.Join(nodePackages, ","), debianSuite, root, mirror)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if b, rerr := os.ReadFile(filepath.Join(root, "debootstrap/debootstrap.log")); rerr == nil {
			out = append(out, "\n--- debootstrap.log (tail) ---\n"+tail(string(b), 40)...)
		}
		return out, err
	}
	// The package cache and indexes are a third of the root and useless
	// without network; documentation and translations are a quarter of
	// the files, which is what extracting a copy costs per test.
	for _, g := range []string{"var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*",
		"usr/share/doc/*", "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*"} {
		matches, _ := filepath.Glob(filepath.Join(root, g))
		for _, m := range matches {
			if filepath.Base(m) == "locale.alias" {
				continue // glibc reads it; not a translation
			}
			if err := os.RemoveAll(m); err != nil {
				return out, err
			}
		}
	}
	// Every installed system has these; debootstrap writes neither (the
	// hostname it copies is the build host's). localhost must resolve for
	// nodeprov's preflight.
	files := map[string]string{
		"etc/hosts":    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
		"etc/hostname": "node\n",
	}
	for p, data := range files {
		if err := os.WriteFile(filepath.Join(root, p), []byte(data), 0o644); err != nil {
			return out, err
		}
	}
	return out, nil
}

// removeTree removes a directory tree in which debootstrap may have left
// mounts (/proc, /sys, and in some setups a bind mount of the host's /dev)
// when it was killed: they are detached first, so that removing the tree
// never reaches into them.
func removeTree(dir string) error {
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var under []string
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			under = append(under, f[4])
		}
	}
	sort.Slice(under, func(i, j int) bool { return len(under[i]) > len(under[j]) })
	for _, m := range under {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount %s before removing %s: %w", m, dir, err)
		}
	}
	return os.RemoveAll(dir)
}

// debianMirror is the Debian mirror the host's apt uses: the first URI of
// a deb source for debianSuite in /etc/apt/sources.list or
// /etc/apt/sources.list.d (one-line and deb822 formats).
// NODEPROV_E2E_DEBIAN_MIRROR overrides it.
func debianMirror() (string, error) {
	if m := os.Getenv("NODEPROV_E2E_DEBIAN_MIRROR"); m != "" {
		return m, nil
	}
	files := []string{"/etc/apt/sources.list"}
	more, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	files = append(files, more...)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var m string
		if strings.HasSuffix(f, ".sources") {
			m = deb822Mirror(string(b))
		} else {
			m = oneLineMirror(string(b))
		}
		if m != "" {
			return m, nil
		}
	}
	return "", fmt.Errorf("no deb source for %s in /etc/apt/sources.list*: set NODEPROV_E2E_DEBIAN_MIRROR", debianSuite)
}

// oneLineMirror reads "deb [options] URI suite components" lines.
func oneLineMirror(s string) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) > 0 {
				f = f[1:]
			}
		}
		if len(f) >= 2 && f[1] == debianSuite {
			return f[0]
		}
	}
	return ""
}

// deb822Mirror reads stanzas with Types, URIs and Suites fields.
func deb822Mirror(s string) string {
	for _, stanza := range strings.Split(s, "\n\n") {
		fields := map[string][]string{}
		for _, line := range strings.Split(stanza, "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok || strings.HasPrefix(line, "#") || strings.HasPrefix(line, " ") {
				continue
			}
			fields[strings.ToLower(strings.TrimSpace(k))] = strings.Fields(v)
		}
		if !contains(fields["types"], "deb") || !contains(fields["suites"], debianSuite) || len(fields["uris"]) == 0 {
			continue
		}
		return fields["uris"][0]
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// newNodeRoot extracts a fresh copy of the Debian node root into the
// test's temporary directory, with the nodeprov under test installed as
// /usr/local/bin/nodeprov. cloud-init is disabled (its marker file) so a
// boot does not wait for a data source; seedNoCloud turns it on.
//
// Like most images built without sealing, the root carries a baked
// machine-id (dbus's postinst wrote one): every copy shares it until a test
// seals the root or regenerates the id.
func newNodeRoot(t *testing.T) string {
	t.Helper()
	tarball := nodeRootTarball(t)
	start := time.Now()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-C", root, "--numeric-owner", "--xattrs", "--xattrs-include=*",
		"-xf", tarball).CombinedOutput(); err != nil {
		t.Fatalf("extract %s: %v\n%s", tarball, err, out)
	}
	if err := copyFile(nodeprov, filepath.Join(root, "usr/local/bin/nodeprov")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/cloud/cloud-init.disabled"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("node root: extracted into %s in %s", root, time.Since(start).Round(10*time.Millisecond))
	return root
}

// seedNoCloud turns cloud-init on in an unbooted root and gives it a NoCloud
// seed: user data, and meta data with instance-id (a new id makes
// cloud-init treat the boot as a new instance). Only NoCloud and None are
// tried, so a boot never waits for a metadata server.
func seedNoCloud(t *testing.T, root, instanceID, userData string) {
	t.Helper()
	files := map[string]string{
		"var/lib/cloud/seed/nocloud/user-data":         userData,
		"var/lib/cloud/seed/nocloud/meta-data":         "instance-id: " + instanceID + "\nlocal-hostname: node\n",
		"etc/cloud/cloud.cfg.d/05-nodeprov-e2e.cfg":    "datasource_list: [NoCloud, None]\n",
		"etc/cloud/cloud.cfg.d/06-nodeprov-locale.cfg": "locale: C.UTF-8\n",
	}
	for p, data := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(root, "etc/cloud/cloud-init.disabled")); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

// TestNspawnDebianMirror: the mirror is read from both formats of apt
// sources, for the right suite only.
func TestNspawnDebianMirror(t *testing.T) {
	for _, tc := range []struct{ name, deb822, oneLine, want string }{
		{name: "deb822", deb822: `Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

# security first, but not the suite asked for
Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian http://other.example/debian
Suites: bookworm bookworm-updates
Components: main
`, want: "http://mirror.example/debian"},
		{name: "one-line", oneLine: `# deb http://commented.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main contrib
deb http://late.example/debian bookworm main
`, want: "http://mirror.example/debian"},
		{name: "other suite", oneLine: "deb http://mirror.example/debian trixie main\n", want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := oneLineMirror(tc.oneLine)
			if tc.deb822 != "" {
				got = deb822Mirror(tc.deb822)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
