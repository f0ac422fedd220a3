package plan

import "github.com/nodeprov/nodeprov/stages/host"

// SystemdPID1 reports whether systemd is (or, for an image root, will be)
// PID 1 on the target: live, the running host's init; offline, whether
// the image has systemd installed.
func (e *Env) SystemdPID1() bool {
	if e.Live && e.Root.IsHostRoot() {
		return host.SystemdBooted()
	}
	for _, p := range []string{"/usr/lib/systemd/systemd", "/lib/systemd/systemd"} {
		if st, err := e.Root.Lstat(p); err == nil && st.Exists {
			return true
		}
	}
	return false
}

// CgroupDriver resolves a runtime's cgroupDriver setting (auto, systemd or
// cgroupfs). auto is systemd wherever systemd is PID 1, whatever the cgroup
// layout (v2, v1 with a unified hierarchy beside it, plain v1): where
// systemd is init it owns the cgroup tree, and a second manager writing it
// directly (runc's cgroupfs driver, and the kubelet's with it) is what the
// Kubernetes container-runtime guide warns against; kubeadm has defaulted
// the kubelet to systemd since 1.22. Without systemd, cgroupfs is the only
// choice.
func CgroupDriver(setting string, systemdPID1 bool) string {
	switch {
	case setting == "systemd" || setting == "cgroupfs":
		return setting
	case systemdPID1:
		return "systemd"
	}
	return "cgroupfs"
}
