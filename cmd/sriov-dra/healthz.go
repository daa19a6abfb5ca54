package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// DefaultHealthSocket is where the DaemonSet has the daemon serve /healthz
// for its exec probes: a pod-private folder, so that during a rolling
// update each daemon's probe reaches that daemon (with host networking a
// TCP port would be shared by the old and the new one).
const DefaultHealthSocket = "/run/sriov-dra/health.sock"

func newHealthzCmd() *cobra.Command {
	var socket string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "healthz",
		Short: "Ask the node daemon on this host whether it is healthy (an exec probe)",
		Long: `Ask the running node daemon for /healthz over its health socket and exit 0 when it
answers ok (registered with kubelet), 1 otherwise with its answer. The DaemonSet uses
it as liveness and readiness probe.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := healthz(cmd.Context(), socket, timeout)
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), body)
			return nil
		},
	}
	cmd.Flags().StringVar(&socket, "socket", DefaultHealthSocket, "the daemon's --health-socket")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait for the answer")
	return cmd
}

func healthz(ctx context.Context, socket string, timeout time.Duration) (string, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://daemon/healthz", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("health socket %s: %w", socket, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return "", errors.New("not healthy: " + strings.TrimSpace(string(b)))
	}
	return string(b), nil
}
