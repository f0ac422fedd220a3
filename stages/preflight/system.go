package preflight

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nodeprov/nodeprov/stages/host"
)

// Host says where the live probes look. The zero value is the running
// host; tests point the directories at fake trees.
type Host struct {
	ProcDir    string // "/proc" when empty
	SysDir     string // "/sys" when empty
	BootDir    string // "/boot" when empty
	ModulesDir string // "/lib/modules" when empty
	// Release is the running kernel's release (uname -r); asked from the
	// kernel when empty.
	Release string
	// DiskFree returns the bytes available to unprivileged users on the
	// filesystem holding the host path dir; statfs when nil.
	DiskFree func(dir string) (uint64, error)
	// Arch is the CPU architecture (GOARCH); runtime.GOARCH when empty.
	// Only amd64 CPUs announce hardware virtualization in /proc/cpuinfo.
	Arch string
	// KVM asks the KVM device what a hypervisor would; host.ProbeKVM of
	// /dev/kvm when nil.
	KVM func() host.KVM
}

// withDefaults fills in the running host's paths.
func (h Host) withDefaults() Host {
	if h.ProcDir == "" {
		h.ProcDir = "/proc"
	}
	if h.SysDir == "" {
		h.SysDir = "/sys"
	}
	if h.BootDir == "" {
		h.BootDir = "/boot"
	}
	if h.ModulesDir == "" {
		h.ModulesDir = "/lib/modules"
	}
	if h.DiskFree == nil {
		h.DiskFree = statfsAvail
	}
	if h.Arch == "" {
		h.Arch = runtime.GOARCH
	}
	if h.KVM == nil {
		h.KVM = func() host.KVM { return host.ProbeKVM("/dev/kvm") }
	}
	return h
}

// kernel returns a host.Kernel over the same paths, for module questions.
func (h Host) kernel() *host.Kernel {
	return &host.Kernel{ProcDir: h.ProcDir, SysDir: h.SysDir, ModulesDir: h.ModulesDir, Release: h.Release}
}

// moduleSupporter is the part of plan.Kernel the probes need.
type moduleSupporter interface {
	ModuleSupport() bool
}

// system is one probe run's view of the host and the target root. It
// caches what several probes read (mounts, kernel config) for the length
// of one run only.
type system struct {
	host    Host
	root    *host.Root
	live    bool
	modules moduleSupporter

	mountsRead bool
	mounts     []mount
	mountsErr  error

	releaseRead bool
	release     string
	releaseErr  error

	configRead bool
	config     *kernelConfig
	configErr  error

	cgroupsRead bool
	cgroups     cgroupSetup
	cgroupsErr  error
}

// newSystem returns a system for one run; modules may be nil, in which
// case module support is read from h's paths.
func newSystem(h Host, root *host.Root, live bool, modules moduleSupporter) *system {
	h = h.withDefaults()
	if modules == nil {
		modules = h.kernel()
	}
	return &system{host: h, root: root, live: live, modules: modules}
}

// kernelRelease returns uname -r of the running kernel.
func (s *system) kernelRelease() (string, error) {
	if !s.releaseRead {
		s.releaseRead = true
		s.release, s.releaseErr = s.host.Release, nil
		if s.release == "" {
			var u unix.Utsname
			if err := unix.Uname(&u); err != nil {
				s.releaseErr = fmt.Errorf("uname: %w", err)
			} else {
				s.release = unix.ByteSliceToString(u.Release[:])
			}
		}
	}
	return s.release, s.releaseErr
}

// mount is one line of /proc/self/mountinfo.
type mount struct {
	point  string // mount point, unescaped
	fstype string
}

// mountinfo returns the mounts of nodeprov's mount namespace.
func (s *system) mountinfo() ([]mount, error) {
	if !s.mountsRead {
		s.mountsRead = true
		p := filepath.Join(s.host.ProcDir, "self", "mountinfo")
		data, err := os.ReadFile(p)
		if err != nil {
			s.mountsErr = fmt.Errorf("read %s: %w", p, err)
		} else {
			s.mounts, s.mountsErr = parseMountinfo(data)
			if s.mountsErr != nil {
				s.mountsErr = fmt.Errorf("parse %s: %w", p, s.mountsErr)
			}
		}
	}
	return s.mounts, s.mountsErr
}

// parseMountinfo parses proc(5) mountinfo lines: "36 35 98:0 /mnt1 /mnt2
// rw,noatime master:1 - ext3 /dev/root rw,errors=continue"; the optional
// fields before "-" vary in number.
func parseMountinfo(data []byte) ([]mount, error) {
	var out []mount
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		pre, post, ok := strings.Cut(line, " - ")
		f := strings.Fields(pre)
		g := strings.Fields(post)
		if !ok || len(f) < 6 || len(g) < 2 {
			return nil, fmt.Errorf("line %d: malformed: %q", n, line)
		}
		out = append(out, mount{point: unescapeOctal(f[4]), fstype: g[0]})
	}
	return out, sc.Err()
}

// unescapeOctal undoes the kernel's \ooo escaping of spaces, tabs,
// newlines and backslashes in mount points.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// sysPath maps a mount point of the running host under /sys to the
// configured SysDir, so fake trees work.
func (s *system) sysPath(point string) string {
	if rest, ok := strings.CutPrefix(point, "/sys"); ok && (rest == "" || rest[0] == '/') {
		return filepath.Join(s.host.SysDir, rest)
	}
	return point
}

// statfsAvail returns the bytes statfs reports available to unprivileged
// users at dir, like df's "Avail".
func statfsAvail(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// kernelVersion returns the major and minor numbers of a release such as
// "6.18.44-fc-v445".
func kernelVersion(release string) (major, minor int, err error) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0, fmt.Errorf("kernel release %q: want major.minor", release)
	}
	major, err = strconv.Atoi(parts[0])
	if err != nil {
		return 0, 0, fmt.Errorf("kernel release %q: major: %w", release, err)
	}
	minorDigits := parts[1]
	if i := strings.IndexFunc(minorDigits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minorDigits = minorDigits[:i]
	}
	minor, err = strconv.Atoi(minorDigits)
	if err != nil {
		return 0, 0, fmt.Errorf("kernel release %q: minor: %w", release, err)
	}
	return major, minor, nil
}

// atLeast reports whether version a.b is at least x.y.
func atLeast(a, b, x, y int) bool { return a > x || a == x && b >= y }

// humanBytes formats n as "1.5 GiB".
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
