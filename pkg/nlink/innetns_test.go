package nlink_test

import (
	"errors"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

func TestInNetns(t *testing.T) {
	ns, err := netns.GetFromPath(newTestNetns(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	wantErr := errors.New("from f")
	tests := []struct {
		name string
		fErr error
	}{
		{name: "f succeeds", fErr: nil},
		{name: "f's error is returned", fErr: wantErr},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The caller's own thread must not move.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			host, err := netns.Get()
			if err != nil {
				t.Fatal(err)
			}
			defer host.Close()
			var inside netns.NsHandle
			err = nlink.InNetns(ns, func() error {
				var gerr error
				inside, gerr = netns.Get()
				if gerr != nil {
					return gerr
				}
				return tc.fErr
			})
			if !errors.Is(err, tc.fErr) || (tc.fErr == nil && err != nil) {
				t.Fatalf("InNetns = %v, want %v", err, tc.fErr)
			}
			defer inside.Close()
			if !inside.Equal(ns) {
				t.Errorf("f ran in netns %v, want %v", inside, ns)
			}
			now, err := netns.Get()
			if err != nil {
				t.Fatal(err)
			}
			defer now.Close()
			if !now.Equal(host) {
				t.Errorf("the caller's thread is in %v after InNetns, want %v", now, host)
			}
		})
	}
}
