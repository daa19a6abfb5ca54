package driver

import (
	"errors"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

func TestPodIfNameOnHost(t *testing.T) {
	f := nlinktest.New()
	f.AddLink(netlink.LinkAttrs{Name: "ens3"})
	f.AddLink(netlink.LinkAttrs{Name: "ens1f0v2"})
	broken := nlinktest.New()
	broken.FailMethod("LinkByName", "", errors.New("netlink socket closed"))
	for _, tc := range []struct {
		name      string
		h         nlink.Handle
		podIfName string
		own       string
		want      string // "" = accepted
	}{
		{"free name", f, "net1", "ens1f0v2", ""},
		{"a host NIC's name", f, "ens3", "ens1f0v2", `ifName "ens3" is the name of host link ens3`},
		{"the device's own host name", f, "ens1f0v2", "ens1f0v2", ""},
		{"another VF's host name", f, "ens1f0v2", "ens1f0v3", `host link ens1f0v2`},
		{"lookup fails", broken, "net1", "x", "look it up in the host netns"},
		{"no netlink seam", nil, "ens3", "x", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := podIfNameOnHost(tc.h, tc.podIfName, tc.own)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("err = %v, want none", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if n := len(f.MutatingCalls()); n != 0 {
		t.Errorf("the check changed something: %v", f.MutatingCalls())
	}
}
