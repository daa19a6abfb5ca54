// Command sriov-dra is the SR-IOV DRA driver: the node daemon (`driver`)
// and the admin tools (`inventory`, `validate`, `devices`, `checkpoint`,
// `version`).
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/component-base/logs"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// The standard library's log goes to klog too; the logging flags
	// take effect once parsed (PersistentPreRunE).
	logs.InitLogs()
	// Run the root's persistent hook (the logging flags) also for a
	// subcommand with a persistent hook of its own; cobra runs only the
	// nearest one otherwise.
	cobra.EnableTraverseRunHooks = true
	root := newRootCmd()
	asKubectlPlugin(root, os.Args)
	err := root.Execute()
	logs.FlushLogs()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(exitCode(err))
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "sriov-dra",
		Short:         "SR-IOV network devices for Kubernetes pods through DRA and NRI",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// The logging flags work after every subcommand; they are applied
	// before it runs (main makes cobra run this hook before a
	// subcommand's own persistent hooks).
	logCfg := addLoggingFlags(root.PersistentFlags())
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error { return logCfg.apply(cmd) }
	root.AddCommand(
		newDriverCmd(),
		newInventoryCmd(),
		newValidateCmd(),
		newDevicesCmd(),
		newHealthzCmd(),
		newCheckpointCmd(),
		newVersionCmd(),
	)
	return root
}

// exitError carries an exit code other than 1.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var e exitError
	if errors.As(err, &e) {
		return e.code
	}
	return 1
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), version)
		},
	}
}
