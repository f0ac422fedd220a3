package host

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Kernel reads and changes the running kernel's sysctls and modules. The
// directories can point at a fake tree for tests.
type Kernel struct {
	ProcDir    string // "/proc"
	SysDir     string // "/sys"
	ModulesDir string // "/lib/modules"
	Release    string // uname -r; from unix.Uname when empty
	Modprobe   string // modprobe binary; "modprobe" looked up in PATH when empty
}

// NewKernel returns a Kernel for the live system.
func NewKernel() *Kernel {
	return &Kernel{ProcDir: "/proc", SysDir: "/sys", ModulesDir: "/lib/modules"}
}

// SysctlPath turns a sysctl key into its path below /proc/sys:
// "net.ipv4.ip_forward" is "net/ipv4/ip_forward". As with sysctl(8), a '/'
// inside a component stands for a literal '.' (net.ipv4.conf.eth0/100.rp_filter
// is net/ipv4/conf/eth0.100/rp_filter).
func SysctlPath(key string) (string, error) {
	if key == "" {
		return "", errors.New("empty sysctl key")
	}
	if strings.IndexByte(key, 0) >= 0 {
		return "", fmt.Errorf("sysctl key %q contains a NUL byte", key)
	}
	parts := strings.Split(key, ".")
	for i, c := range parts {
		c = strings.ReplaceAll(c, "/", ".")
		if c == "" || c == "." || c == ".." {
			return "", fmt.Errorf("sysctl key %q has an invalid component %q", key, c)
		}
		parts[i] = c
	}
	return strings.Join(parts, "/"), nil
}

// NormalizeSysctl trims v and collapses runs of whitespace to one space, so
// "4096\t16384\t4194304\n" (as the kernel prints it) equals "4096 16384 4194304".
func NormalizeSysctl(v string) string {
	return strings.Join(strings.Fields(v), " ")
}

// ReadSysctl returns the normalized value of key; a key the kernel does not
// have gives exists=false.
func (k *Kernel) ReadSysctl(key string) (value string, exists bool, err error) {
	p, err := SysctlPath(key)
	if err != nil {
		return "", false, err
	}
	data, err := os.ReadFile(filepath.Join(k.ProcDir, "sys", p))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", false, nil
		}
		return "", false, fmt.Errorf("sysctl %s: %w", key, err)
	}
	return NormalizeSysctl(string(data)), true, nil
}

// WriteSysctl sets key to value in the running kernel.
func (k *Kernel) WriteSysctl(key, value string) error {
	p, err := SysctlPath(key)
	if err != nil {
		return err
	}
	if strings.ContainsAny(value, "\n\x00") {
		return fmt.Errorf("sysctl %s: value %q contains a newline or NUL byte", key, value)
	}
	dir := filepath.Join(k.ProcDir, "sys")
	// No O_CREAT: a missing key must fail, not become a file (in a fake tree).
	f, err := os.OpenFile(filepath.Join(dir, p), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sysctl %s: no such key in %s (is the module providing it loaded?)", key, dir)
		}
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, unix.EROFS) {
			return fmt.Errorf("sysctl %s: not writable: %w", key, errnoOf(err))
		}
		return fmt.Errorf("sysctl %s: %w", key, err)
	}
	// One write: the kernel parses each write(2) on its own.
	_, werr := f.Write([]byte(value + "\n"))
	cerr := f.Close()
	if werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("sysctl %s: kernel refused value %q: %w", key, value, errnoOf(werr))
	}
	return nil
}

// errnoOf strips the *PathError around an errno so messages show only it.
func errnoOf(err error) error {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// ModuleState is what the kernel knows of a module.
type ModuleState int

const (
	// ModuleAbsent is a module that is neither loaded nor built in.
	ModuleAbsent ModuleState = iota
	// ModuleLoaded is a module listed in /proc/modules.
	ModuleLoaded
	// ModuleBuiltin is a module compiled into the kernel.
	ModuleBuiltin
	// ModuleAssumedBuiltin is a module on a kernel without module support
	// that could not be confirmed as built in; such a kernel has only
	// built-in code, so the module is there or nowhere.
	ModuleAssumedBuiltin
)

// String returns "absent", "loaded", "builtin" or "assumed builtin".
func (s ModuleState) String() string {
	switch s {
	case ModuleAbsent:
		return "absent"
	case ModuleLoaded:
		return "loaded"
	case ModuleBuiltin:
		return "builtin"
	case ModuleAssumedBuiltin:
		return "assumed builtin"
	}
	return fmt.Sprintf("ModuleState(%d)", int(s))
}

// ModuleSupport reports whether the kernel can load modules (it has
// /proc/modules).
func (k *Kernel) ModuleSupport() bool {
	_, err := os.Stat(filepath.Join(k.ProcDir, "modules"))
	return err == nil
}

// NormalizeModule returns a module name with '-' written as '_', the form
// the kernel uses; both spellings name the same module.
func NormalizeModule(name string) string {
	return strings.ReplaceAll(name, "-", "_")
}

// checkModule rejects names that could not be a module.
func checkModule(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/ \t\n\x00") {
		return fmt.Errorf("invalid module name %q", name)
	}
	return nil
}

// ModuleState reports whether name is loaded, built in or absent.
func (k *Kernel) ModuleState(name string) (ModuleState, error) {
	if err := checkModule(name); err != nil {
		return ModuleAbsent, err
	}
	name = NormalizeModule(name)
	support := k.ModuleSupport()
	if support {
		loaded, err := k.moduleLoaded(name)
		if err != nil {
			return ModuleAbsent, fmt.Errorf("module %s: %w", name, err)
		}
		if loaded {
			return ModuleLoaded, nil
		}
	}
	// Not loaded: an entry in /sys/module is then a built-in module (built-in
	// modules appear there when they have parameters or a version).
	if _, err := os.Stat(filepath.Join(k.SysDir, "module", name)); err == nil {
		return ModuleBuiltin, nil
	}
	builtin, err := k.moduleInBuiltinLists(name)
	if err != nil {
		return ModuleAbsent, fmt.Errorf("module %s: %w", name, err)
	}
	switch {
	case builtin:
		return ModuleBuiltin, nil
	case !support:
		return ModuleAssumedBuiltin, nil
	}
	return ModuleAbsent, nil
}

// moduleLoaded reports whether name is listed in /proc/modules.
func (k *Kernel) moduleLoaded(name string) (bool, error) {
	data, err := os.ReadFile(filepath.Join(k.ProcDir, "modules"))
	if err != nil {
		return false, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 && NormalizeModule(f[0]) == name {
			return true, nil
		}
	}
	return false, sc.Err()
}

// moduleInBuiltinLists looks name up in modules.builtin (one .ko path per
// line) and modules.builtin.modinfo (NUL-separated "module.key=value"), either
// of which may be missing.
func (k *Kernel) moduleInBuiltinLists(name string) (bool, error) {
	release, err := k.release()
	if err != nil {
		return false, err
	}
	dir := filepath.Join(k.ModulesDir, release)
	data, err := os.ReadFile(filepath.Join(dir, "modules.builtin"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	for line := range strings.Lines(string(data)) {
		base := strings.TrimSuffix(path.Base(strings.TrimSpace(line)), ".ko")
		if NormalizeModule(base) == name {
			return true, nil
		}
	}
	data, err = os.ReadFile(filepath.Join(dir, "modules.builtin.modinfo"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	for entry := range strings.SplitSeq(string(data), "\x00") {
		if mod, _, ok := strings.Cut(entry, "."); ok && NormalizeModule(mod) == name {
			return true, nil
		}
	}
	return false, nil
}

// release returns the kernel release whose module lists apply.
func (k *Kernel) release() (string, error) {
	if k.Release != "" {
		return k.Release, nil
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("uname: %w", err)
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}

// LoadModule loads name with modprobe; modprobe's stderr is part of the
// error.
func (k *Kernel) LoadModule(ctx context.Context, name string) error {
	if err := checkModule(name); err != nil {
		return err
	}
	bin, err := k.modprobe()
	if err != nil {
		return fmt.Errorf("load module %s: %w", name, err)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "--", name)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return fmt.Errorf("load module %s: %s: %w: %s", name, bin, err, msg)
		}
		return fmt.Errorf("load module %s: %s: %w", name, bin, err)
	}
	return nil
}

// modprobe finds the modprobe binary: k.Modprobe, PATH, then the sbin
// directories a minimal PATH (cloud-init, cron) may lack.
func (k *Kernel) modprobe() (string, error) {
	if k.Modprobe != "" {
		return k.Modprobe, nil
	}
	if p, err := exec.LookPath("modprobe"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/modprobe", "/sbin/modprobe"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("modprobe not found in PATH, /usr/sbin or /sbin")
}

// ModuleLoadable reports whether modprobe could load name: the running
// release's modules.dep lists a name.ko (compressed or not). A kernel
// without module support loads nothing.
func (k *Kernel) ModuleLoadable(name string) (bool, error) {
	if err := checkModule(name); err != nil {
		return false, err
	}
	if !k.ModuleSupport() {
		return false, nil
	}
	release, err := k.release()
	if err != nil {
		return false, err
	}
	data, err := os.ReadFile(filepath.Join(k.ModulesDir, release, "modules.dep"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	name = NormalizeModule(name)
	for line := range strings.Lines(string(data)) {
		ko, _, _ := strings.Cut(line, ":")
		base := path.Base(strings.TrimSpace(ko))
		for _, ext := range []string{".xz", ".zst", ".gz"} {
			base = strings.TrimSuffix(base, ext)
		}
		if mod, ok := strings.CutSuffix(base, ".ko"); ok && NormalizeModule(mod) == name {
			return true, nil
		}
	}
	return false, nil
}
