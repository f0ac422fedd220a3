package host

import "os"

// SystemdBooted reports whether systemd is the running host's init
// (sd_booted: /run/systemd/system is a directory). It says nothing about
// an image root; callers ask only when the target is the running host.
func SystemdBooted() bool {
	st, err := os.Stat("/run/systemd/system")
	return err == nil && st.IsDir()
}
