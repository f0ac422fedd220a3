package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	art "github.com/nodeprov/nodeprov/e2e/artifacts"
)

// dockerNodeSpec is the spec of a node whose CRI is Docker through
// cri-dockerd: containerd, runc and the CNI plugins from the release tree
// at url (dockerd runs on the managed containerd), crictl, Docker's static
// tarball and cri-dockerd from extraURL, pinned; dockerd pulls Docker Hub
// images through the registry at PodRegistry. logSize is a log option, to
// change daemon.json between applies.
//
// Two limits of where the test runs, and how the node gets past them:
// this machine withholds CAP_SYS_RESOURCE from everything, so no process
// may lower its oom_score_adj below 0, and cri-dockerd gives every sandbox
// -998 (dockershim's PodInfraOOMAdj), which runc then fails to write; and
// nspawn's seccomp filter refuses keyctl, with which runc gives each
// container a session keyring. The node's dockerd therefore runs
// containers through runc-nspawn, a wrapper that drops oomScoreAdj from
// the bundle's config.json and adds --no-new-keyring before running the
// runc nodeprov installed (the containerd pods test restricts the first
// with containerd's restrict_oom_score_adj).
func dockerNodeSpec(a *artifacts, url, extraURL, dockerSHA, criSHA, crictlRel, crictlSHA, logSize string) string {
	return fmt.Sprintf(`apiVersion: nodeprov/v1alpha1
kind: Node
metadata: {name: docker-node}
%[1]s  crictl: {version: %[2]s, baseURL: "%[3]s/%[4]s", sha256: {amd64: %[5]s}}
  docker: {version: %[6]s, baseURL: "%[3]s/docker", sha256: {amd64: %[7]s}}
  criDockerd: {version: %[8]s, baseURL: "%[3]s/cri-dockerd/v%[8]s", sha256: {amd64: %[9]s}}
files:
  - path: /usr/local/sbin/runc-nspawn
    mode: "0755"
    contents: |
      #!/usr/bin/python3
      # runc for containers in this nspawn node on this machine: no
      # oomScoreAdj (CAP_SYS_RESOURCE is withheld), no session keyring
      # (nspawn's seccomp filter refuses keyctl).
      import json, os, sys
      args = sys.argv[1:]
      for cmd in ("create", "run"):
          if cmd in args:
              args.insert(args.index(cmd) + 1, "--no-new-keyring")
              if "--bundle" in args:
                  p = os.path.join(args[args.index("--bundle") + 1], "config.json")
                  c = json.load(open(p))
                  c["process"].pop("oomScoreAdj", None)
                  json.dump(c, open(p, "w"))
              break
      os.execv("/usr/local/sbin/runc", ["runc"] + args)
docker:
  registryMirrors: ["http://%[10]s"]
  logOpts: {max-size: %[11]s}
  settings:
    bridge: none
    iptables: false
    default-runtime: runc-nspawn
    runtimes: {runc-nspawn: {path: /usr/local/sbin/runc-nspawn}}
  cri:
    sandboxImage: docker.io/library/pause:3.10
    cni: {subnet: %[12]s}
units:
  - {name: containerd.service, enabled: true, state: started}
  - {name: docker.socket, enabled: true, state: started}
  - {name: docker.service, enabled: true, state: started}
  - {name: cri-docker.socket, enabled: true, state: started}
  - {name: cri-docker.service, enabled: true, state: started}
`, art.ComponentsYAML(url, a.keyring, false), art.CrictlVersion, extraURL, crictlRel, crictlSHA,
		art.DockerVersion, dockerSHA, art.CriDockerdVersion, criSHA, art.PodRegistry, logSize, art.PodSubnet)
}

// TestDockerCRI is issue 15's proof with the real daemons: in the
// nspawn-booted node (real systemd), nodeprov installs Docker Engine
// (Debian's dockerd, packed as Docker's static release), cri-dockerd (the
// fixture built from upstream's tag), containerd, runc, the CNI plugins
// and crictl, all pinned or checksummed, writes daemon.json, the bridge
// network and crictl.yaml, and starts the five units. The crictl nodeprov
// installed then runs a pod through cri-dockerd's socket, its images
// (busybox, and the sandbox image) pulled by dockerd through the
// registry mirror from a real registry (Debian's docker-registry) in the
// node's network namespace. A second apply changes nothing; a changed log
// option in daemon.json restarts dockerd once, and nothing else.
func TestDockerCRI(t *testing.T) {
	for _, tool := range []string{"docker-registry", "skopeo", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (make test installs it): %v", tool, err)
		}
	}
	a := releaseArtifacts(t)
	extra := t.TempDir()
	_, dockerSHA, err := art.PackDocker(extra)
	if err != nil {
		t.Fatal(err)
	}
	criName := fmt.Sprintf("cri-dockerd-%s.amd64.tgz", art.CriDockerdVersion)
	criFile, criSHA, err := art.Fixture(criName, "https://github.com/Mirantis/cri-dockerd/releases/download/v"+art.CriDockerdVersion+"/"+criName)
	if err != nil {
		t.Fatal(err)
	}
	if err := copyFile(criFile, filepath.Join(extra, "cri-dockerd", "v"+art.CriDockerdVersion, criName)); err != nil {
		t.Fatal(err)
	}
	crictlRel, crictlSHA, err := art.PackCrictl(extra, crictlBinary(t))
	if err != nil {
		t.Fatal(err)
	}

	root := newNodeRoot(t)
	ns := newNetns(t)
	url := a.serveIn(t, ns, "127.0.0.1:0", nil)
	extraURL := ns.serve(t, "127.0.0.1:0", http.FileServer(http.Dir(extra)))
	regDir := startRegistry(t, ns, []registryImage{{"library/busybox:1.36", []string{"/bin/sh"}}, {"library/pause:3.10", pauseEntry}})
	// The bridge plugin routes pods through the node's namespace.
	if err := ns.do(func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644) }); err != nil {
		t.Fatal(err)
	}
	n := bootNode(t, root, bootOptions{ns: ns, containers: true, args: []string{"--capability=CAP_NET_ADMIN"}})

	specText := dockerNodeSpec(a, url, extraURL, dockerSHA, criSHA, crictlRel, crictlSHA, "10m")
	r, rep := applyIn(t, n, specText)
	if r.code != 0 {
		t.Fatalf("apply:\n%s\n%s\n%s", r, n.journal(t, "docker.service", 30), n.journal(t, "cri-docker.service", 30))
	}
	for _, u := range []string{"containerd.service", "docker.socket", "docker.service", "cri-docker.socket", "cri-docker.service"} {
		if got := strings.TrimSpace(n.sh(t, "systemctl is-active "+u).stdout); got != "active" {
			t.Errorf("%s is %q after apply\n%s", u, got, n.journal(t, u, 20))
		}
	}
	t.Logf("first apply: %d changed", rep.Changed)
	if got := n.mustSh(t, "cat /etc/crictl.yaml"); !strings.Contains(got, "runtime-endpoint: unix:///run/cri-dockerd.sock") {
		t.Errorf("crictl.yaml:\n%s", got)
	}
	if got := n.mustSh(t, "docker info --format '{{.CgroupDriver}} {{.ServerVersion}} {{.RegistryConfig.Mirrors}}'"); !strings.Contains(got, "systemd "+art.DockerVersion) || !strings.Contains(got, art.PodRegistry) {
		t.Errorf("docker info: %q", got)
	}

	pod := n.sh(t, podScript)
	t.Logf("a pod through cri-dockerd:\n%s", pod.stdout)
	if pod.code != 0 {
		t.Fatalf("pod through cri-dockerd:\n%s\n%s\n%s", pod, n.journal(t, "cri-docker.service", 40), n.journal(t, "docker.service", 20))
	}
	for _, want := range []string{"RuntimeName:  docker", "logs: hello-from-docker", "exec: written-by-docker",
		"inet " + strings.TrimSuffix(art.PodSubnet, "0/24"), "removed", "crictl version v" + art.CrictlVersion} {
		if !strings.Contains(pod.stdout, want) {
			t.Errorf("pod output lacks %q", want)
		}
	}
	rlog, _ := os.ReadFile(filepath.Join(regDir, "registry.log"))
	for _, want := range []string{"/v2/library/busybox/manifests/1.36", "/v2/library/pause/manifests/3.10"} {
		if !strings.Contains(string(rlog), want) {
			t.Errorf("the registry never served %s: the image did not come through the mirror\n%s", want, tail(string(rlog), 10))
		}
	}

	dockerStarts, criStarts := n.starts(t, "docker.service"), n.starts(t, "cri-docker.service")
	if r, rep := applyIn(t, n, specText); r.code != 0 || rep.Changed != 0 {
		t.Errorf("second apply: exit %d, changed %v\n%s", r.code, changedActions(rep), r.stderr)
	}
	r, rep = applyIn(t, n, dockerNodeSpec(a, url, extraURL, dockerSHA, criSHA, crictlRel, crictlSHA, "20m"))
	if r.code != 0 {
		t.Fatalf("apply with a new log option:\n%s", r)
	}
	if got := changedActions(rep); strings.Join(got, ", ") != "config /etc/docker/daemon.json (update), restart docker.service (update)" {
		t.Errorf("a new log option changed %q", got)
	}
	if got := n.starts(t, "docker.service"); got != dockerStarts+1 {
		t.Errorf("docker.service started %d times after the daemon.json change, want %d", got, dockerStarts+1)
	}
	if got := n.starts(t, "cri-docker.service"); got != criStarts {
		t.Errorf("cri-docker.service restarted (%d starts, was %d)", got, criStarts)
	}
	if got := n.mustSh(t, "docker info --format '{{.LoggingDriver}}'; grep max-size /etc/docker/daemon.json"); !strings.Contains(got, `"max-size": "20m"`) {
		t.Errorf("daemon.json after the change: %q", got)
	}
}

// podScript runs in the node: crictl (installed by nodeprov, configured by
// its crictl.yaml) pulls busybox through dockerd and the mirror, runs a
// pod whose container writes a file and prints its address, reads logs
// and runs exec, then removes it all.
const podScript = `set -e
crictl --version
crictl version
cat > /tmp/pod.json <<'EOF'
{"metadata": {"name": "pod-docker", "namespace": "default", "uid": "uid-docker", "attempt": 0}, "log_directory": "/tmp/pod-logs", "linux": {}}
EOF
cat > /tmp/ctr.json <<'EOF'
{"metadata": {"name": "busybox"}, "image": {"image": "docker.io/library/busybox:1.36"},
 "command": ["/bin/sh", "-c", "echo hello-from-docker; ip -4 -o addr show dev eth0; echo written-by-docker > /tmp/written; sleep 1000"],
 "log_path": "busybox.log", "linux": {}}
EOF
crictl pull docker.io/library/busybox:1.36
mkdir -p /tmp/pod-logs  # the kubelet makes the pod log directory
pod=$(crictl runp /tmp/pod.json)
ctr=$(crictl create $pod /tmp/ctr.json /tmp/pod.json)
crictl start $ctr
for i in $(seq 100); do crictl exec $ctr cat /tmp/written 2>/dev/null | sed 's/^/exec: /' | grep . && break; sleep 0.1; done
crictl logs $ctr | sed 's/^/logs: /'
crictl stop --timeout 1 $ctr >/dev/null
crictl rm $ctr >/dev/null
crictl stopp $pod >/dev/null
crictl rmp $pod >/dev/null
[ -z "$(crictl pods -q)" ] && echo removed
`

// registryImage is an image the test registry holds: a busybox-static
// image (art.WriteBusyboxImage) with entry as its entrypoint, pushed as ref
// (repository:tag; library/… for Docker Hub's official images).
type registryImage struct {
	ref   string
	entry []string
}

// pauseEntry is the entrypoint of the pause stand-in: it exits on SIGTERM
// as the real pause does (a sleep as PID 1 ignores it, and a runtime would
// wait out its grace period on every stop).
var pauseEntry = []string{"/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 1 & wait $!; done"}

// startRegistry runs Debian's docker-registry on PodRegistry inside the
// namespace, with images pushed by skopeo; it is stopped when the test
// ends. It returns the registry's directory (registry.log is its log).
func startRegistry(t *testing.T, ns *netns, images []registryImage) string {
	t.Helper()
	dir := registryDir(t)
	in := launchRegistry(t, dir, art.PodRegistry, []string{"nsenter", "--net=" + ns.path(), "--"})
	for i, img := range images {
		_, tag, _ := strings.Cut(img.ref, ":")
		layout := filepath.Join(dir, "img", strconv.Itoa(i))
		if err := art.WriteBusyboxImage(layout, tag, img.entry); err != nil {
			t.Fatal(err)
		}
		if out, err := in("skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
			"oci:"+layout+":"+tag, "docker://"+art.PodRegistry+"/"+img.ref); err != nil {
			t.Fatalf("push %s: %v\n%s", img.ref, err, out)
		}
	}
	return dir
}

// launchRegistry runs Debian's docker-registry on addr, with its storage
// and registry.log in dir, through the command prefix wrap (nsenter into
// a namespace, or nothing), until the test ends, and waits until it
// answers. It returns a function that runs a command through wrap.
func launchRegistry(t *testing.T, dir, addr string, wrap []string) func(args ...string) ([]byte, error) {
	t.Helper()
	if _, err := exec.LookPath("docker-registry"); err != nil {
		t.Fatalf("docker-registry is not installed (make test installs it): %v", err)
	}
	in := func(args ...string) ([]byte, error) {
		all := append(append([]string(nil), wrap...), args...)
		return exec.Command(all[0], all[1:]...).CombinedOutput()
	}
	cfg := fmt.Sprintf("version: 0.1\nstorage: {filesystem: {rootdirectory: %s/store}}\nhttp: {addr: %s}\nlog: {accesslog: {disabled: false}, level: info}\n", dir, addr)
	if err := os.WriteFile(filepath.Join(dir, "registry.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	args := append(append([]string(nil), wrap...), "docker-registry", "serve", filepath.Join(dir, "registry.yml"))
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	for i := 0; ; i++ {
		if _, err := in("curl", "-sf", "http://"+addr+"/v2/"); err == nil {
			return in
		}
		if i == 100 {
			t.Fatalf("the registry on %s does not answer:\n%s", addr, tail(readFile(t, filepath.Join(dir, "registry.log")), 10))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// registryDir is a directory for the test's registry, removed after it.
func registryDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "nodeprov-registry-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
