package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/component-base/featuregate"
	logsapi "k8s.io/component-base/logs/api/v1"
	_ "k8s.io/component-base/logs/json/register" // --logging-format=json
)

// logging is the logging configuration every subcommand shares, set by
// the flags of Kubernetes components: -v, --vmodule, --logging-format
// (text or json), the --log-* options, and --feature-gates for the
// logging features (ContextualLogging is on by default).
type logging struct {
	config *logsapi.LoggingConfiguration
	gates  featuregate.MutableVersionedFeatureGate
}

// addLoggingFlags adds the logging flags to fs (the root command's
// persistent flags, so that they work after any subcommand).
func addLoggingFlags(fs *pflag.FlagSet) *logging {
	l := &logging{config: logsapi.NewLoggingConfiguration(), gates: featuregate.NewFeatureGate()}
	// Only fails when a gate is added twice, to this new gate set: a bug.
	if err := logsapi.AddFeatureGates(l.gates); err != nil {
		panic(fmt.Sprintf("logging feature gates: %v", err))
	}
	logsapi.AddFlags(l.config, fs)
	l.gates.AddFlag(fs)
	return l
}

// apply validates the parsed flags and sets up klog once, before the
// subcommand runs: its log lines go to cmd's stderr (and, with a split
// stream, info lines to its stdout). A bad value is a usage error.
func (l *logging) apply(cmd *cobra.Command) error {
	err := logsapi.ValidateAndApplyWithOptions(l.config,
		&logsapi.LoggingOptions{ErrorStream: cmd.ErrOrStderr(), InfoStream: cmd.OutOrStdout()}, l.gates)
	if err != nil {
		return exitError{code: 2, err: fmt.Errorf("logging flags: %w", err)}
	}
	return nil
}
