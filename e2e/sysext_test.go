package e2e

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	art "github.com/nodeprov/nodeprov/e2e/artifacts"
)

// sysextName is the extension the test builds (--name).
const sysextName = "np-runtime"

// sysextBuild is what `nodeprov sysext -o json` reports.
type sysextBuild struct {
	OK     bool `json:"ok"`
	Sysext struct {
		Image       string `json:"image"`
		SHA256      string `json:"sha256"`
		Size        int64  `json:"size"`
		Relocations []struct {
			Artifact, From, To string
		} `json:"relocations"`
		Upheld  []string           `json:"upheld"`
		Notes   []string           `json:"notes"`
		Host    []string           `json:"host"`
		Release string             `json:"extensionRelease"`
		Timing  map[string]float64 `json:"timingMs"`
		Files   []struct {
			Path, Type string
		} `json:"files"`
	} `json:"sysext"`
}

func buildSysext(t *testing.T, specFile, out string) sysextBuild {
	t.Helper()
	start := time.Now()
	r := runNodeprov(t, "", "sysext", "-o", "json", "--arch", "amd64", "--name", sysextName, "--out", out, specFile)
	if r.code != 0 {
		t.Fatalf("nodeprov sysext:\n%s", r)
	}
	var b sysextBuild
	if err := json.Unmarshal([]byte(r.stdout), &b); err != nil || !b.OK {
		t.Fatalf("nodeprov sysext -o json: %v\n%s", err, r.stdout)
	}
	t.Logf("built %s in %s (fetch+install %.0f ms, mksquashfs %.0f ms): %d bytes, sha256:%s",
		b.Sysext.Image, time.Since(start).Round(time.Millisecond), b.Sysext.Timing["artifacts"], b.Sysext.Timing["squashfs"], b.Sysext.Size, b.Sysext.SHA256)
	return b
}

// TestSysext is issue 17's systemd-sysext proof. On the host: the image of
// a containerd spec is built twice, from two caches, in two directories, a
// second apart and under another umask, and the bytes are identical; the
// squashfs holds the artifacts relocated (/usr/local/bin -> /usr/bin,
// /usr/local/sbin -> /usr/bin, /opt as is), root-owned with time 0, and
// nothing outside /usr and /opt. In the nspawn-booted Debian node (systemd
// 252): the image in /var/lib/extensions merges, containerd.service is
// started by the Upholds= wiring once the manager reloads, runs the
// extension's /usr/bin/containerd, ctr talks to it, and a runc pod (the
// pods test's setup: registry mirror, bridge CNI) runs on the extension's
// shim, runc and CNI plugins, with the host configuration written by
// `nodeprov apply --stages containerd`; unmerge takes it all away: no
// overlay on /usr, no binaries, no unit, no loop device.
func TestSysext(t *testing.T) {
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("mksquashfs is missing (squashfs-tools, in the Makefile's TEST_DEBS), and CI must not skip")
		}
		t.Skip("mksquashfs is missing: apt-get install squashfs-tools (make test installs it)")
	}
	a := releaseArtifacts(t)
	srv := a.serve(t, nil)
	extra := t.TempDir()
	crictlRel, crictlSHA, err := art.PackCrictl(extra, crictlBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	extraSrv, err := art.Serve(extra, art.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { extraSrv.Close() })
	// The pods test's spec: containerd (Debian's 1.6, release-shaped),
	// runc, the CNI plugins and crictl, the built-in containerd.service
	// enabled; containerd's config with the test registry as mirror.
	specText := nodePodsSpec(a, srv.URL, extraSrv.URL, crictlRel, crictlSHA, "", "registry.k8s.io/pause:3.10")
	dir := t.TempDir()
	specFile := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(specFile, []byte(specText), 0o644); err != nil {
		t.Fatal(err)
	}

	first := buildSysext(t, specFile, filepath.Join(dir, "out1"))
	time.Sleep(1100 * time.Millisecond)
	old := syscall.Umask(0o077)
	second := buildSysext(t, specFile, filepath.Join(dir, "out2"))
	syscall.Umask(old)
	img := first.Sysext.Image
	sum1, err := fileHash(img, sha256.New)
	if err != nil {
		t.Fatal(err)
	}
	sum2, err := fileHash(second.Sysext.Image, sha256.New)
	if err != nil {
		t.Fatal(err)
	}
	if sum1 != sum2 || sum1 != first.Sysext.SHA256 {
		t.Fatalf("two builds of one spec differ: sha256 %s and %s (reported %s)", sum1, sum2, first.Sysext.SHA256)
	}
	t.Logf("byte-identical: both builds sha256:%s, %d bytes", sum1, first.Sysext.Size)
	if filepath.Base(img) != sysextName+".raw" {
		t.Errorf("image %s, want %s.raw", img, sysextName)
	}
	checkSysextImage(t, img, first)

	// Into the node.
	root := newNodeRoot(t)
	ns := newNetns(t)
	startRegistry(t, ns, []registryImage{{"library/busybox:1.36", []string{"/bin/sh"}}, {"pause:3.10", pauseEntry}})
	if err := ns.do(func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644) }); err != nil {
		t.Fatal(err)
	}
	imgInNode := filepath.Join(root, "var/lib/extensions", sysextName+".raw")
	var st syscall.Stat_t
	// Registered before the node boots, so it runs after the node is
	// gone: a loop device still attached then is a leak.
	t.Cleanup(func() {
		if st.Ino != 0 {
			releaseLoops(t, st)
		}
	})
	args := []string{"--capability=CAP_NET_ADMIN"}
	args = append(args, loopDeviceBinds(t)...)
	n := bootNode(t, root, bootOptions{ns: ns, containers: true, args: args})
	if err := os.MkdirAll(filepath.Dir(imgInNode), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(img, imgInNode); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(imgInNode, &st); err != nil {
		t.Fatal(err)
	}
	if r := n.sh(t, "for b in containerd runc ctr; do command -v $b; done; systemctl cat containerd.service"); r.code == 0 || strings.Contains(r.stdout, "/") {
		t.Fatalf("the node has containerd before the merge:\n%s", r)
	}
	// Host configuration stays with apply, next to the extension.
	hostStages := strings.Join(first.Sysext.Host, ",")
	if hostStages != "containerd" {
		t.Errorf("host stages %q, want containerd", hostStages)
	}
	n.writeFile(t, "/etc/nodeprov/node.yaml", []byte(specText), 0o600)
	if r := n.run(t, "", "nodeprov", "apply", "--stages", hostStages, "/etc/nodeprov/node.yaml"); r.code != 0 {
		t.Fatalf("nodeprov apply --stages %s in the node:\n%s", hostStages, r)
	}

	t.Logf("systemd-sysext list:\n%s", n.mustSh(t, "systemd-sysext list"))
	// systemd-sysext exits 0 when it skips an image it cannot attach (a
	// loop device that does not show up in time in a node without udev,
	// seen once in CI): it then merges nothing. The debug log says why; a
	// second attempt is made, and logged, before the test fails.
	var status string
	for attempt := 1; ; attempt++ {
		start := time.Now()
		r := n.sh(t, "SYSTEMD_LOG_LEVEL=debug systemd-sysext refresh")
		if r.code != 0 {
			t.Fatalf("systemd-sysext refresh:\n%s", r)
		}
		t.Logf("merge attempt %d in %s", attempt, time.Since(start).Round(time.Millisecond))
		status = n.mustSh(t, "systemd-sysext status")
		if regexpLine(status, "/usr", sysextName) || attempt == 2 {
			break
		}
		t.Logf("attempt %d merged nothing; systemd-sysext said:\n%s", attempt, tail(r.stderr, 30))
	}
	t.Logf("systemd-sysext status:\n%s", status)
	for _, h := range []string{"/usr", "/opt"} {
		if !regexpLine(status, h, sysextName) {
			t.Errorf("systemd-sysext status does not show %s merged into %s", sysextName, h)
		}
	}
	if got := n.mustSh(t, "for b in containerd runc ctr; do command -v $b; done; ls /opt/cni/bin/bridge"); got != "/usr/bin/containerd\n/usr/bin/runc\n/usr/bin/ctr\n/opt/cni/bin/bridge\n" {
		t.Errorf("binaries after the merge:\n%s", got)
	}

	// systemd 252 does not reload the manager on a merge
	// (EXTENSION_RELOAD_MANAGER is 255's); after the reload,
	// multi-user.target's Upholds= starts containerd with no start command.
	start := time.Now()
	n.mustSh(t, "systemctl daemon-reload")
	var props map[string]string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		props = n.unitProps(t, "containerd.service", "ActiveState", "SubState", "MainPID", "FragmentPath", "UnitFileState")
		if props["ActiveState"] == "active" || time.Now().After(deadline) {
			break
		}
	}
	if props["ActiveState"] != "active" {
		t.Fatalf("containerd.service not started after the merge and a daemon-reload: %v\n%s", props, n.journal(t, "containerd.service", 30))
	}
	t.Logf("containerd.service %s/%s %s after the reload (pid %s, %s)", props["ActiveState"], props["SubState"],
		time.Since(start).Round(time.Millisecond), props["MainPID"], props["FragmentPath"])
	// Debian's /lib is a symlink to usr/lib; systemd names the unit path
	// by its first search directory.
	if fp := props["FragmentPath"]; fp != "/usr/lib/systemd/system/containerd.service" && fp != "/lib/systemd/system/containerd.service" {
		t.Errorf("containerd.service loaded from %s", props["FragmentPath"])
	}
	if got := strings.TrimSpace(n.mustSh(t, "readlink /proc/"+props["MainPID"]+"/exe")); got != "/usr/bin/containerd" {
		t.Errorf("containerd runs %s, want the extension's /usr/bin/containerd", got)
	}
	var ver string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r := n.sh(t, "ctr version")
		ver = r.stdout + r.stderr
		if r.code == 0 || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("ctr version:\n%s", ver)
	if !strings.Contains(ver, "Server:") || strings.Count(ver, "Version:  "+art.ContainerdVersion) < 2 {
		t.Errorf("ctr version does not show client and server %s:\n%s", art.ContainerdVersion, ver)
	}
	if got := n.mustSh(t, "runc --version | head -1"); !strings.Contains(got, runcVersion) {
		t.Errorf("runc from the extension: %q", got)
	}
	// A runc pod through the CRI, every binary from the extension (the
	// shim and runc found on PATH in /usr/bin, the CNI plugins in the
	// overlaid /opt), images through the mirror.
	out := n.sh(t, fmt.Sprintf(runPodScript, "sysext"))
	if out.code != 0 {
		t.Fatalf("a pod on the extension's containerd:\n%s\n%s", out, n.journal(t, "containerd.service", 40))
	}
	t.Logf("a runc pod on the extension's containerd:\n%s", out.stdout)
	for _, want := range []string{"logs: hello-from-sysext", "inet " + strings.TrimSuffix(art.PodSubnet, "0/24")} {
		if !strings.Contains(out.stdout, want) {
			t.Errorf("pod output lacks %q", want)
		}
	}
	if got := n.mustSh(t, "for p in /proc/[0-9]*; do readlink $p/exe; done | grep containerd-shim | sort -u"); got != "/usr/bin/containerd-shim-runc-v2\n" {
		t.Errorf("the pod's shim runs %q, want the extension's /usr/bin/containerd-shim-runc-v2", got)
	}
	// Nothing may run from the extension when it goes: the pod first.
	n.mustSh(t, "crictl rmp -fa >/dev/null")

	// Unmerge: the overlay goes, and with the reload the unit and its
	// wiring; the service that ran from the extension is stopped.
	if r := n.sh(t, "systemd-sysext unmerge && systemctl daemon-reload && systemctl stop containerd.service"); r.code != 0 {
		t.Fatalf("unmerge:\n%s", r)
	}
	after := n.sh(t, `systemd-sysext status; findmnt -rn -o TARGET,FSTYPE /usr /opt; echo "--"; ls /usr/bin/containerd /usr/bin/runc /opt/cni/bin /usr/lib/systemd/system/containerd.service /usr/lib/systemd/system/multi-user.target.d /usr/lib/extension-release.d 2>&1; systemctl show -p LoadState,ActiveState containerd.service; grep -c sysext /proc/self/mountinfo`)
	t.Logf("after unmerge:\n%s", after.stdout)
	for _, bad := range []string{sysextName, "overlay", "LoadState=loaded", "ActiveState=active"} {
		if strings.Contains(after.stdout, bad) {
			t.Errorf("after unmerge the node still shows %q", bad)
		}
	}
	if !strings.HasSuffix(after.stdout, "\n0\n") {
		t.Errorf("sysext mounts left in the node")
	}
	for _, gone := range []string{"/usr/bin/containerd", "/usr/bin/runc", "/opt/cni/bin", "/usr/lib/systemd/system/containerd.service"} {
		if !strings.Contains(after.stdout, "cannot access '"+gone+"'") {
			t.Errorf("%s is still there after unmerge", gone)
		}
	}
	if loops := loopsOf(t, st); len(loops) > 0 {
		t.Errorf("loop devices still attached to the image after unmerge: %v", loops)
	}
}

// checkSysextImage lists the squashfs (unsquashfs -lln: numeric owners,
// modes, times) and checks its layout.
func checkSysextImage(t *testing.T, img string, b sysextBuild) {
	t.Helper()
	r := runCmd(t, "", "unsquashfs", "-lln", "-d", "", img)
	if r.code != 0 {
		t.Fatalf("unsquashfs -lln:\n%s", r)
	}
	entries := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		// mode owner size date time path [-> target]; the root's path
		// is empty.
		f := strings.Fields(line)
		if len(f) < 5 || !strings.ContainsAny(f[0][:1], "-dl") {
			continue
		}
		p := "/"
		if len(f) > 5 {
			p = f[5]
		}
		entries[p] = line
		if f[1] != "0/0" {
			t.Errorf("%s: owner %s, want 0/0", p, f[1])
		}
		if f[3] != "1970-01-01" || f[4] != "00:00" {
			t.Errorf("%s: time %s %s, want the epoch", p, f[3], f[4])
		}
		if p != "/" && !strings.HasPrefix(p, "/usr") && !strings.HasPrefix(p, "/opt") {
			t.Errorf("%s: outside /usr and /opt", p)
		}
		if strings.HasPrefix(p, "/usr/local") || strings.HasPrefix(p, "/usr/sbin") {
			t.Errorf("%s: the extension must not have /usr/local or /usr/sbin", p)
		}
	}
	for _, p := range []string{"/usr/bin/containerd", "/usr/bin/ctr", "/usr/bin/containerd-shim-runc-v2", "/usr/bin/runc", "/usr/bin/crictl",
		"/opt/cni/bin/bridge", "/usr/lib/systemd/system/containerd.service",
		"/usr/lib/systemd/system/multi-user.target.d/10-" + sysextName + ".conf",
		"/usr/lib/extension-release.d/extension-release." + sysextName} {
		if _, ok := entries[p]; !ok {
			t.Errorf("image lacks %s", p)
		}
	}
	if l := entries["/usr/bin/containerd"]; !strings.HasPrefix(l, "-rwxr-xr-x") {
		t.Errorf("containerd: %s", l)
	}
	if len(entries) != len(b.Sysext.Files) {
		t.Errorf("image has %d entries, the report lists %d", len(entries), len(b.Sysext.Files))
	}
	got := map[string]string{}
	for _, rl := range b.Sysext.Relocations {
		got[rl.From] = rl.To
	}
	for from, to := range map[string]string{"/usr/local/bin/containerd": "/usr/bin/containerd", "/usr/local/sbin/runc": "/usr/bin/runc", "/opt/cni/bin/bridge": "/opt/cni/bin/bridge"} {
		if got[from] != to {
			t.Errorf("relocation of %s: %q, want %s", from, got[from], to)
		}
	}
	if !strings.Contains(strings.Join(b.Sysext.Notes, "\n"), "/opt is read-only") {
		t.Errorf("no note that a merged /opt is read-only: %q", b.Sysext.Notes)
	}
	unsq := t.TempDir()
	if r := runCmd(t, "", "unsquashfs", "-no-xattrs", "-f", "-d", filepath.Join(unsq, "x"), img); r.code != 0 {
		t.Fatalf("unsquashfs:\n%s", r)
	}
	read := func(p string) string { return readFile(t, filepath.Join(unsq, "x", p)) }
	release := read("usr/lib/extension-release.d/extension-release." + sysextName)
	if release != "ID=_any\nSYSEXT_LEVEL=1.0\nARCHITECTURE=x86-64\nEXTENSION_RELOAD_MANAGER=1\n" || release != b.Sysext.Release {
		t.Errorf("extension-release:\n%s", release)
	}
	if wiring := read("usr/lib/systemd/system/multi-user.target.d/10-" + sysextName + ".conf"); !strings.Contains(wiring, "[Unit]\nUpholds=containerd.service\n") {
		t.Errorf("multi-user.target drop-in:\n%s", wiring)
	}
	if unit := read("usr/lib/systemd/system/containerd.service"); !strings.Contains(unit, "\nExecStart=/usr/bin/containerd\n") {
		t.Errorf("containerd.service does not start the extension's binary:\n%s", unit)
	}
}

// regexpLine reports whether a line of out starts with prefix and names
// word.
func regexpLine(out, prefix, word string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix+" ") && strings.Contains(l, word) {
			return true
		}
	}
	return false
}

// loopDeviceBinds gives the node the host's loop devices: systemd-sysext
// attaches a raw image to a free one (LOOP_CTL_GET_FREE on
// /dev/loop-control, then /dev/loopN), and nspawn's private /dev has
// neither. The container reaches the shared kernel loop devices; only a
// device the kernel creates after the node booted (every bound one taken
// by then) would be missing in it.
func loopDeviceBinds(t *testing.T) []string {
	t.Helper()
	// losetup --find makes the kernel create a free device when every
	// existing one is in use, so that one is bound too.
	if out, err := exec.Command("losetup", "--find").CombinedOutput(); err != nil {
		t.Fatalf("losetup --find: %v\n%s", err, out)
	}
	devs, err := filepath.Glob("/dev/loop[0-9]*")
	if err != nil || len(devs) == 0 {
		t.Fatalf("no /dev/loopN on this host (%v): systemd-sysext needs loop devices for a raw image", err)
	}
	sort.Strings(devs)
	args := []string{"--bind=/dev/loop-control"}
	for _, d := range devs {
		args = append(args, "--bind="+d)
	}
	return args
}

// loopsOf lists the host's loop devices backed by the file st describes.
func loopsOf(t *testing.T, st syscall.Stat_t) []string {
	t.Helper()
	out, err := exec.Command("losetup", "--list", "--noheadings", "--raw", "--output", "NAME,BACK-INO,BACK-MAJ:MIN").Output()
	if err != nil {
		t.Errorf("losetup --list: %v", err)
		return nil
	}
	want := fmt.Sprintf("%d %d:%d", st.Ino, unix.Major(st.Dev), unix.Minor(st.Dev))
	var devs []string
	for _, l := range strings.Split(string(out), "\n") {
		if dev, rest, ok := strings.Cut(strings.TrimSpace(l), " "); ok && rest == want {
			devs = append(devs, dev)
		}
	}
	return devs
}

// releaseLoops detaches loop devices a failed run left on the image (the
// node's mounts die with it; an attached loop device would not).
func releaseLoops(t *testing.T, st syscall.Stat_t) {
	for _, d := range loopsOf(t, st) {
		t.Errorf("loop device %s still attached to the node's image after the node stopped: detaching it", d)
		if out, err := exec.Command("losetup", "-d", d).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", d, err, out)
		}
	}
}
