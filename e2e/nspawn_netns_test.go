package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// netns is a network namespace the test created: a loopback interface and
// nothing else, so no packet can leave it. A booted node runs in one
// (systemd-nspawn --network-namespace-path), and the test process serves
// the loopback artifact mirror inside the same namespace: the node reaches
// http://127.0.0.1:PORT as any host reaches its own mirror, and the only
// traffic is on a loopback nobody else shares.
//
// Why this and not the alternatives: a pre-filled, bind-mounted download
// cache only covers downloads nodeprov resolves before boot (not the
// nodeprov binary cloud-init fetches, nor a spec changed mid-test); a veth
// pair needs addresses, routes and links on the host side to clean up.
// Here the namespace lives exactly as long as something holds it (the
// file below, the listeners, the container's processes) and needs no
// cleanup of its own: no mount, no name in /run/netns, no interface on the
// host.
type netns struct {
	f *os.File // /proc/thread-self/ns/net of the thread that created it
}

// newNetns creates a network namespace with its loopback up. It is gone
// once the test's listeners and every node booted in it are.
func newNetns(t *testing.T) *netns {
	t.Helper()
	requireRoot(t)
	type made struct {
		f   *os.File
		err error
	}
	ch := make(chan made, 1)
	go func() {
		// The thread is never unlocked: when this goroutine returns, the
		// runtime ends the thread instead of reusing it in the wrong
		// namespace.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- made{err: fmt.Errorf("unshare(CLONE_NEWNET): %w", err)}
			return
		}
		f, err := os.Open("/proc/thread-self/ns/net")
		if err == nil {
			err = loopbackUp()
		}
		ch <- made{f: f, err: err}
	}()
	m := <-ch
	if m.err != nil {
		if m.f != nil {
			m.f.Close()
		}
		t.Fatalf("create a network namespace: %v", m.err)
	}
	ns := &netns{f: m.f}
	t.Cleanup(func() { ns.f.Close() })
	return ns
}

// loopbackUp sets lo up in the calling thread's network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// path names the namespace for other programs (systemd-nspawn
// --network-namespace-path, nsenter --net) for as long as the test runs.
func (ns *netns) path() string {
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), ns.f.Fd())
}

// do runs fn on an OS thread that has joined the namespace. Sockets fn
// creates belong to the namespace for their whole life, whichever thread
// uses them later.
func (ns *netns) do(fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see newNetns
		if err := unix.Setns(int(ns.f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- fmt.Errorf("setns: %w", err)
			return
		}
		ch <- fn()
	}()
	return <-ch
}

// listen opens a TCP listener inside the namespace; addr is usually
// 127.0.0.1:PORT. It is closed when the test ends.
func (ns *netns) listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	err := ns.do(func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s in the test's network namespace: %v", addr, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// serve serves h on addr inside the namespace and returns its base URL.
func (ns *netns) serve(t *testing.T, addr string, h http.Handler) string {
	t.Helper()
	l := ns.listen(t, addr)
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Logf("server in the test's network namespace: %v", err)
		}
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return "http://" + l.Addr().String()
}
