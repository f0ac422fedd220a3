package host

import (
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// SystemdBooted reports whether systemd is the running host's init
// (sd_booted: /run/systemd/system is a directory). It says nothing about
// an image root; callers ask only when the target is the running host.
func SystemdBooted() bool {
	st, err := os.Stat("/run/systemd/system")
	return err == nil && st.IsDir()
}

// BootID is the running kernel's boot id (/proc/sys/kernel/random/boot_id),
// or "" when it cannot be read.
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// TerminalWidth reports whether w is a terminal and, if it reports one,
// its width in columns (0 when it does not: a pty without a size).
func TerminalWidth(w io.Writer) (cols int, terminal bool) {
	if !IsTerminal(w) {
		return 0, false
	}
	ws, err := unix.IoctlGetWinsize(int(w.(*os.File).Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0, true
	}
	return int(ws.Col), true
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Hostname is the running kernel's host name in lower case: the Node name
// a kubelet registers when it is not given --hostname-override.
func Hostname() (string, error) {
	name, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("read the host name: %w", err)
	}
	return strings.ToLower(strings.TrimSpace(name)), nil
}
