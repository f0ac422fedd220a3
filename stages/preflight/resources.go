package preflight

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// checkProc confirms a proc filesystem at /proc: everything live (sysctl,
// modules, cgroups, runc itself) reads it.
func checkProc(s *system) finding {
	mounts, err := s.mountinfo()
	if err != nil {
		return fail("/proc is not mounted: %v", err)
	}
	for _, m := range mounts {
		if m.point == "/proc" && m.fstype == "proc" {
			return pass("proc at /proc")
		}
	}
	return fail("no proc filesystem mounted at /proc")
}

// Disk thresholds for the filesystem that will hold containerd's images.
const (
	diskDir      = "/var/lib/containerd"
	diskWarnFree = 2 << 30   // an image or two
	diskFailFree = 256 << 20 // not even the pause image and a shim
)

// checkDisk reports the space available where containerd keeps its
// content, or on the nearest existing parent directory. Only real
// directories inside the root are considered, so a symlink in an image
// cannot point statfs at a host path.
func checkDisk(s *system) finding {
	at := "/"
	for p := diskDir; p != "/"; p = path.Dir(p) {
		if usable, err := s.realDirChain(p); err == nil && usable {
			at = p
			break
		}
	}
	avail, err := s.host.DiskFree(s.root.HostPath(at))
	if err != nil {
		return warn("%v", err)
	}
	where := at
	if at != diskDir {
		where += " (for " + diskDir + ")"
	}
	switch {
	case avail < diskFailFree:
		return fail("%s available on %s; containerd needs room for images", humanBytes(avail), where)
	case avail < diskWarnFree:
		return warn("%s available on %s; less than %s", humanBytes(avail), where, humanBytes(diskWarnFree))
	}
	return pass("%s available on %s", humanBytes(avail), where)
}

// realDirChain reports whether p and every parent of it inside the root
// is a directory, not a symlink.
func (s *system) realDirChain(p string) (bool, error) {
	for q := p; q != "/"; q = path.Dir(q) {
		st, err := s.root.Lstat(q)
		if err != nil {
			return false, err
		}
		if !st.Exists || st.Type != fs.ModeDir {
			return false, nil
		}
	}
	return true, nil
}

// checkSwap reports active swap. Advisory: the kubelet refuses to start
// with swap on unless failSwapOn is false, but containerd does not care.
func checkSwap(s *system) finding {
	p := filepath.Join(s.host.ProcDir, "swaps")
	data, err := os.ReadFile(p)
	if err != nil {
		return warn("read %s: %v", p, err)
	}
	var devices []string
	var totalKiB uint64
	sc := bufio.NewScanner(bytes.NewReader(data))
	for first := true; sc.Scan(); first = false {
		f := strings.Fields(sc.Text())
		if first || len(f) < 3 {
			continue // header: Filename Type Size Used Priority
		}
		devices = append(devices, f[0])
		if kib, err := strconv.ParseUint(f[2], 10, 64); err == nil {
			totalKiB += kib
		}
	}
	if len(devices) == 0 {
		return pass("off")
	}
	return warn("on: %s (%s); the kubelet needs failSwapOn: false, or swap off", strings.Join(devices, ", "), humanBytes(totalKiB<<10))
}
