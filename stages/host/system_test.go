package host

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTerminalWidth: a pty is a terminal, of the width it reports, or of
// width 0 when it reports none (script(1) from a non-terminal); a regular
// file is not a terminal.
func TestTerminalWidth(t *testing.T) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no pseudo-terminals: %v", err)
		}
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer master.Close()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()

	if cols, ok := TerminalWidth(slave); !ok || cols != 0 {
		t.Errorf("pty without a size: TerminalWidth = %d, %v; want 0, true", cols, ok)
	}
	if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: 132}); err != nil {
		t.Fatal(err)
	}
	if cols, ok := TerminalWidth(slave); !ok || cols != 132 {
		t.Errorf("pty of 132 columns: TerminalWidth = %d, %v", cols, ok)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if cols, ok := TerminalWidth(f); ok || cols != 0 {
		t.Errorf("regular file: TerminalWidth = %d, %v; want 0, false", cols, ok)
	}
}

// TestHostname compares with uname(2) inside a UTS namespace whose host
// name the test sets, in mixed case, as a cloud image may.
func TestHostname(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root for a UTS namespace, and CI must not skip")
		}
		t.Skip("needs root for a UTS namespace")
	}
	done := make(chan error, 1)
	go func() {
		// The thread is never unlocked: the runtime ends it instead of
		// reusing it in the test's namespace.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWUTS); err != nil {
			done <- err
			return
		}
		if err := unix.Sethostname([]byte("Worker-7.Example.INTERNAL")); err != nil {
			done <- err
			return
		}
		name, err := Hostname()
		if err == nil && name != "worker-7.example.internal" {
			err = fmt.Errorf("Hostname() = %q, want worker-7.example.internal", name)
		}
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
