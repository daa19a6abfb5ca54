package nlinktest

import (
	"fmt"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
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
