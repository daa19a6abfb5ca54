package nlinktest

import (
	"fmt"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// NewNetns creates a named network namespace for a host-kernel test and
// returns its path; it is deleted when the test ends, and with it every
// link the test left in it. The namespace is made on a locked thread that
// returns to the test's netns before it is unlocked, so no goroutine of
// the test ever runs in it (a thread that cannot return stays locked and
// dies with its goroutine).
func NewNetns(t testing.TB, name string) string {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if err == nil {
			ns.Close()
		}
		if serr := netns.Set(orig); serr != nil {
			errc <- fmt.Errorf("return to the test netns: %w", serr)
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() { _ = netns.DeleteNamed(name) })
	return filepath.Join("/var/run/netns", name)
}

// InNewNetns creates an unnamed network namespace, runs f (when not nil)
// on the test's goroutine with its thread in that namespace (so f may
// open sockets there and call t.Fatal), and returns a handle of it. The
// caller closes the handle: the namespace lives while a handle or a
// socket holds it. The thread returns to the test's netns before it is
// unlocked; one that cannot stays locked and dies with its goroutine.
// Where no namespace can be made, the test is skipped.
func InNewNetns(t testing.TB, f func()) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get the test's netns: %v", err)
	}
	defer orig.Close()
	defer func() {
		if err := netns.Set(orig); err != nil {
			t.Fatalf("return to the test's netns: %v", err)
		}
		runtime.UnlockOSThread()
	}()
	ns, err := netns.New()
	if err != nil {
		t.Skipf("cannot create a netns: %v", err)
	}
	if f != nil {
		done := false
		defer func() {
			if !done { // f failed the test: nobody will close it
				ns.Close()
			}
		}()
		f()
		done = true
	}
	return ns
}

// HostHandle is a real netlink handle in the test's own netns, closed
// when the test ends.
func HostHandle(t testing.TB) *nlink.Real {
	t.Helper()
	h, err := nlink.NewHost()
	if err != nil {
		t.Fatalf("netlink handle on the host: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

// HandleAt is a real netlink handle whose sockets live in the netns at
// path, closed when the test ends.
func HandleAt(t testing.TB, path string) *nlink.Real {
	t.Helper()
	h, err := nlink.NewAt(path)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", path, err)
	}
	t.Cleanup(h.Close)
	return h
}
