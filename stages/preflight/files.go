package preflight

import (
	"errors"
	"io/fs"
	"net/netip"
	"path"
	"strings"
)

// searchPath is where binaries are looked up inside the target root: the
// PATH of a root shell, sbin first, so a minimal PATH (cloud-init, cron)
// does not hide mount or modprobe.
func searchPath() []string {
	return []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}
}

// findBinary looks name up in the root's PATH directories and returns the
// first executable regular file (symlinks followed inside the root).
func (s *system) findBinary(name string) (string, bool, error) {
	var firstErr error
	for _, dir := range searchPath() {
		p := path.Join(dir, name)
		f, err := s.root.Open(p)
		if err != nil {
			// Missing, a directory, a dangling link: keep looking, but
			// remember a real I/O problem for the message.
			if !errors.Is(err, fs.ErrNotExist) && firstErr == nil {
				firstErr = err
			}
			continue
		}
		st, err := f.Stat()
		f.Close()
		if err == nil && st.Mode().Perm()&0o111 != 0 {
			return p, true, nil
		}
	}
	return "", false, firstErr
}

// notFound describes a failed lookup.
func (s *system) notFound(name string, err error) string {
	msg := name + " not found in " + strings.Join(searchPath(), ":")
	if !s.root.IsHostRoot() {
		msg += " (root " + s.root.Dir() + ")"
	}
	if err != nil {
		msg += " (" + err.Error() + ")"
	}
	return msg
}

// checkBinary returns a check that name is installed in the root.
func checkBinary(name string) func(*system) finding {
	return func(s *system) finding {
		p, ok, err := s.findBinary(name)
		if !ok {
			return fail("%s", s.notFound(name, err))
		}
		return pass("found %s", p)
	}
}

// checkModprobe requires modprobe only where modules can be loaded: a
// kernel without module support has nothing to load. Offline, the image's
// kernel is unknown, so a missing modprobe only warns.
func checkModprobe(s *system) finding {
	if s.live && !s.modules.ModuleSupport() {
		return pass("not needed: kernel has no module support (all modules builtin)")
	}
	p, ok, err := s.findBinary("modprobe")
	switch {
	case ok:
		return pass("found %s", p)
	case !s.live:
		return warn("%s; needed at first boot if the image's kernel loads modules", s.notFound("modprobe", err))
	}
	return fail("%s; the kernel has module support and modules are loaded with modprobe", s.notFound("modprobe", err))
}

// checkFirewall looks for iptables, then nft. Advisory: containerd and
// runc do not need either, but CNI masquerading and port mapping, and the
// kube-proxy of a bare-metal install, do.
func checkFirewall(s *system) finding {
	p, ok, err := s.findBinary("iptables")
	if ok {
		return pass("found %s", p)
	}
	p, ok, err2 := s.findBinary("nft")
	if ok {
		return pass("found %s (no iptables)", p)
	}
	if err == nil {
		err = err2
	}
	return warn("%s; CNI masquerading and port mapping need one of them", s.notFound("iptables or nft", err))
}

// checkLocalhost reads the root's /etc/hosts: containerd's streaming
// server and the kubelet talk to themselves through "localhost", and
// statically linked Go programs (containerd, kubelet) resolve it from
// /etc/hosts, not from nss-myhostname. No DNS query is sent.
func checkLocalhost(s *system) finding {
	const hostsPath = "/etc/hosts"
	data, exists, err := s.root.ReadFile(hostsPath)
	switch {
	case err != nil:
		return fail("%v", err)
	case !exists && !s.live:
		return warn("%s missing in the image; make sure first boot creates one with localhost (cloud-init manage_etc_hosts)", hostsPath)
	case !exists:
		return fail("%s missing; add \"127.0.0.1 localhost\" and \"::1 localhost\"", hostsPath)
	}
	var loop, other []string
	for line := range strings.Lines(string(data)) {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 || !hasName(f[1:], "localhost") {
			continue
		}
		addr, err := netip.ParseAddr(f[0])
		switch {
		case err != nil:
			other = append(other, f[0])
		case addr.WithZone("").IsLoopback():
			loop = append(loop, f[0])
		default:
			other = append(other, f[0])
		}
	}
	switch {
	case len(loop) > 0:
		return pass("localhost -> %s (%s)", strings.Join(loop, ", "), hostsPath)
	case len(other) > 0:
		return fail("localhost -> %s in %s: not a loopback address", strings.Join(other, ", "), hostsPath)
	}
	return fail("no localhost entry in %s; add \"127.0.0.1 localhost\" and \"::1 localhost\"", hostsPath)
}

// hasName reports whether names contains name, ignoring case as resolvers
// do.
func hasName(names []string, name string) bool {
	for _, n := range names {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// checkMachineID is a light look at /etc/machine-id; the machine-id stage
// does the real checks and applies the policy. The id itself is never
// printed: systemd treats it as confidential.
func checkMachineID(s *system) finding {
	const p = "/etc/machine-id"
	data, exists, err := s.root.ReadFile(p)
	if err != nil {
		return warn("%v", err)
	}
	id := strings.TrimSpace(string(data))
	firstBoot := !exists || id == "" || id == "uninitialized"
	switch {
	case firstBoot && !s.live:
		return pass("not set yet: systemd generates it at first boot")
	case !exists:
		return warn("%s missing", p)
	case firstBoot:
		return warn("%s is %q: not initialised", p, id)
	case !validMachineID(id):
		return warn("%s is not 32 lowercase hex characters", p)
	case !s.live:
		return warn("%s is set in the image: every clone would share it (seal the image with nodeprov seal)", p)
	}
	return pass("present")
}

// validMachineID reports whether id is 32 lowercase hex characters, not
// all zeros.
func validMachineID(id string) bool {
	if len(id) != 32 || id == strings.Repeat("0", 32) {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
