package preflight

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroupRoot is where runc, containerd and the kubelet expect cgroups.
const cgroupRoot = "/sys/fs/cgroup"

// cgroupMode is how the cgroup hierarchies are laid out.
type cgroupMode int

const (
	cgroupNone   cgroupMode = iota
	cgroupV1                // only v1 hierarchies (legacy)
	cgroupHybrid            // v1 hierarchies plus a v2 one for process tracking
	cgroupV2                // one unified v2 hierarchy at /sys/fs/cgroup
)

// cgroupSetup is what the mount table says about cgroups.
type cgroupSetup struct {
	mode cgroupMode
	// unified is the v2 mount point (host path as the kernel shows it),
	// empty without one.
	unified string
	// v1 is the number of v1 hierarchies mounted under /sys/fs/cgroup.
	v1 int
}

// cgroupSetup detects the cgroup layout from mountinfo, the way systemd
// describes it: "unified" when /sys/fs/cgroup itself is cgroup2, "hybrid"
// when v1 controllers sit under it next to a cgroup2 mount (usually
// /sys/fs/cgroup/unified), "legacy" v1 otherwise. mountinfo rather than
// statfs magic so fake trees can describe any layout.
func (s *system) cgroupSetup() (cgroupSetup, error) {
	if s.cgroupsRead {
		return s.cgroups, s.cgroupsErr
	}
	s.cgroupsRead = true
	mounts, err := s.mountinfo()
	if err != nil {
		s.cgroupsErr = err
		return s.cgroups, err
	}
	var c cgroupSetup
	rootIsV2 := false
	for _, m := range mounts {
		under := m.point == cgroupRoot || strings.HasPrefix(m.point, cgroupRoot+"/")
		switch {
		case m.point == cgroupRoot:
			// A later mount covers an earlier one at the same point.
			rootIsV2 = m.fstype == "cgroup2"
			if rootIsV2 {
				c.unified = m.point
			}
		case m.fstype == "cgroup2" && under:
			c.unified = m.point
		case m.fstype == "cgroup" && under:
			c.v1++
		}
	}
	switch {
	case rootIsV2:
		c.mode, c.v1 = cgroupV2, 0
	case c.v1 > 0 && c.unified != "":
		c.mode = cgroupHybrid
	case c.v1 > 0:
		c.mode = cgroupV1
	}
	s.cgroups = c
	return c, nil
}

// checkCgroupVersion reports the cgroup layout. v1 (alone or hybrid)
// works but warns: Kubernetes keeps cgroup v1 in maintenance mode and new
// features (memory QoS, swap) need v2.
func checkCgroupVersion(s *system) finding {
	c, err := s.cgroupSetup()
	if err != nil {
		return fail("%v", err)
	}
	switch c.mode {
	case cgroupV2:
		if rel, err := s.kernelRelease(); err == nil {
			if major, minor, err := kernelVersion(rel); err == nil && !atLeast(major, minor, cgroupV2Major, cgroupV2Minor) {
				return warn("cgroup v2 unified (%s); kernel %s is older than the %d.%d recommended for cgroup v2", c.unified, rel, cgroupV2Major, cgroupV2Minor)
			}
		}
		return pass("cgroup v2 unified (%s)", c.unified)
	case cgroupHybrid:
		return warn("cgroup v1 hybrid (unified at %s); cgroup v1 is in maintenance mode in Kubernetes, prefer cgroup v2", c.unified)
	case cgroupV1:
		return warn("cgroup v1 (%d hierarchies, no unified hierarchy); cgroup v1 is in maintenance mode in Kubernetes, prefer cgroup v2", c.v1)
	}
	return fail("no cgroup filesystem mounted at %s", cgroupRoot)
}

// Controllers containers need. On v2, devices and freezer are not
// controllers (eBPF programs and cgroup.freeze do their work) and cpuacct
// is part of cpu.
func requiredControllers(mode cgroupMode) []string {
	if mode == cgroupV2 {
		return []string{"cpu", "cpuset", "memory", "pids"}
	}
	return []string{"cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer"}
}

// checkControllers checks the required controllers: from cgroup.controllers
// of the unified hierarchy on v2, from /proc/cgroups on v1 and hybrid
// (where a controller counts when it is enabled and bound to a hierarchy,
// v1 or the unified one).
func checkControllers(s *system) finding {
	c, err := s.cgroupSetup()
	if err != nil {
		return fail("%v", err)
	}
	var unified map[string]bool
	if c.unified != "" {
		p := filepath.Join(s.sysPath(c.unified), "cgroup.controllers")
		data, err := os.ReadFile(p)
		if err != nil {
			return fail("read %s: %v", p, err)
		}
		unified = map[string]bool{}
		for _, name := range strings.Fields(string(data)) {
			unified[name] = true
		}
	}
	want := requiredControllers(c.mode)
	var problems []string
	if c.mode == cgroupV2 {
		for _, name := range want {
			if !unified[name] {
				problems = append(problems, name+" not available")
			}
		}
	} else {
		p := filepath.Join(s.host.ProcDir, "cgroups")
		data, err := os.ReadFile(p)
		if err != nil {
			return fail("read %s: %v", p, err)
		}
		table, err := parseProcCgroups(data)
		if err != nil {
			return fail("parse %s: %v", p, err)
		}
		for _, name := range want {
			st, ok := table[name]
			switch {
			case !ok:
				problems = append(problems, name+" not in the kernel")
			case !st.enabled:
				problems = append(problems, name+" disabled (kernel command line?)")
			case st.hierarchy == 0 && !unified[name]:
				problems = append(problems, name+" not mounted")
			}
		}
	}
	version := "v1"
	if c.mode == cgroupV2 {
		version = "v2"
	}
	if len(problems) > 0 {
		return fail("%s", strings.Join(problems, "; "))
	}
	return pass("%s (%s)", strings.Join(want, " "), version)
}

// controllerState is one line of /proc/cgroups.
type controllerState struct {
	hierarchy int
	enabled   bool
}

// parseProcCgroups parses "#subsys_name hierarchy num_cgroups enabled".
func parseProcCgroups(data []byte) (map[string]controllerState, error) {
	out := map[string]controllerState{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			return nil, fmt.Errorf("line %d: malformed: %q", n, line)
		}
		h, err := strconv.Atoi(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: hierarchy: %w", n, err)
		}
		out[f[0]] = controllerState{hierarchy: h, enabled: f[3] == "1"}
	}
	return out, sc.Err()
}
