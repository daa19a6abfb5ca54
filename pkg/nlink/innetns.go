package nlink

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// InNetns runs f with the calling thread's network namespace set to ns,
// for the few things that have no netlink handle to carry the namespace
// (a socket, a listener, a library call that uses the thread's netns). f
// runs on a goroutine of its own, locked to its OS thread; the thread is
// switched back before it is unlocked. If switching back fails the thread
// stays locked and ends with the goroutine, so no other goroutine ever
// runs in ns afterwards; InNetns then returns that error (f's result is
// whatever f left behind, for the caller to release).
func InNetns(ns netns.NsHandle, f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("get the thread's netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter netns: %w", err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			// The thread stays locked: Go discards it when this goroutine ends.
			done <- fmt.Errorf("return from netns: %w", err)
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}
