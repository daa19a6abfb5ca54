package driver

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"

	"github.com/vishvananda/netlink"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

// TestPFPassthroughOptIn: a PF is offered whole only when the admin
// lists it and the host does not use its netdev. Prepare refuses it
// otherwise, saying why, and a listed PF refused is logged once.
func TestPFPassthroughOptIn(t *testing.T) {
	const pfPCI, pfName = "0000:af:00.0", "ens5f0"
	pfDev := inventory.DeviceName(pfPCI)
	for _, tc := range []struct {
		name        string
		passthrough []string
		inUse       bool   // the host has a global address on the PF
		want        string // Prepare's error; "" = prepared
		wantLog     bool
	}{
		{name: "not listed", want: "device is not in this node's inventory of offered devices: PF " + inventory.ReasonPFNotListed},
		{name: "listed by name", passthrough: []string{pfName}},
		{name: "listed by PCI address", passthrough: []string{pfPCI}},
		{name: "listed but in use", passthrough: []string{pfName}, inUse: true, wantLog: true,
			want: "PF listed for passthrough but refused: the host uses netdev ens5f0: global addresses 192.0.2.9/24"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			ctx := klog.NewContext(context.Background(), textlogger.NewLogger(textlogger.NewConfig(textlogger.Output(&logs))))
			e := newEnv(t, sysfstest.Standard())
			e.passthrough = tc.passthrough
			e.restart()
			if tc.inUse {
				l, _ := e.fix.Netlink.Link(pfName)
				if err := e.fix.Netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, 9), Mask: net.CIDRMask(24, 32)}}); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 2; i++ { // the second scan must not log again
				if _, err := e.d.scan(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if n := strings.Count(logs.String(), "PF listed for passthrough is not offered whole"); n != map[bool]int{true: 1}[tc.wantLog] {
				t.Errorf("refusal logged %d times, want wantLog=%v:\n%s", n, tc.wantLog, logs.String())
			} else if tc.wantLog && !strings.Contains(logs.String(), "192.0.2.9/24") {
				t.Errorf("log does not say why:\n%s", logs.String())
			}
			pub := &countingPublisher{}
			if _, err := e.d.publish(ctx, pub); err != nil {
				t.Fatal(err)
			}
			published := false
			for _, s := range pub.last.Slices {
				for _, d := range s.Devices {
					published = published || d.Name == pfDev
				}
			}
			if published != (tc.want == "") {
				t.Errorf("PF published = %v, want %v", published, tc.want == "")
			}
			e.j.take()
			err := prepare(t, e.d, newClaim("u", "p1", []resourceapi.DeviceRequestAllocationResult{result("a", pfDev)}))["u"].Err
			if tc.want == "" {
				if err != nil {
					t.Fatalf("prepare: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("prepare err = %v, want one containing %q", err, tc.want)
			}
			if steps := e.j.take(); len(steps) != 0 {
				t.Errorf("refused claim took steps: %v", steps)
			}
		})
	}
}
