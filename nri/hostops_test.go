package nri

import (
	"testing"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// newTestHostOps returns the real host operations on this machine.
func newTestHostOps(t testing.TB) HostOps {
	t.Helper()
	h, err := nlink.NewHost()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	ops, err := NewHostOps(HostConfig{Root: "/", Host: h})
	if err != nil {
		t.Fatal(err)
	}
	return ops
}
