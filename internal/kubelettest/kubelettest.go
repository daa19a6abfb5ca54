// Package kubelettest plays kubelet's side of a DRA kubelet plugin in
// tests: the plugin watcher's registration handshake and the gRPC client
// on the plugin's socket. Only tests import it.
package kubelettest

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// Dial opens a gRPC client on the unix socket at path, closed when the
// test ends.
func Dial(t testing.TB, path string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Register is kubelet's plugin watcher on the registration socket
// regSock: GetInfo, then NotifyRegistrationStatus (registered). It
// returns what the plugin said of itself and a DRA client on the
// endpoint it named; the caller checks the info.
func Register(ctx context.Context, t testing.TB, regSock string) (*registerapi.PluginInfo, drapb.DRAPluginClient) {
	t.Helper()
	rc := registerapi.NewRegistrationClient(Dial(t, regSock))
	info, err := rc.GetInfo(ctx, &registerapi.InfoRequest{})
	if err != nil {
		t.Fatalf("kubelet GetInfo: %v", err)
	}
	if _, err := rc.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Fatalf("kubelet NotifyRegistrationStatus: %v", err)
	}
	return info, drapb.NewDRAPluginClient(Dial(t, info.Endpoint))
}
