package ipam

// This file words a failed plugin run: the PluginError a tenant may read,
// and the plugin's own output, which goes only to the node's log.

import (
	"bytes"
	"errors"
	"fmt"

	cnitypes "github.com/containernetworking/cni/pkg/types"
	"k8s.io/klog/v2"
)

func logStderr(logger klog.Logger, plugin, cmd string, buf *bytes.Buffer) {
	if buf.Len() > 0 {
		logger.V(4).Info("IPAM plugin stderr", "plugin", plugin, "command", cmd, "stderr", buf.String())
	}
}

// PluginError is a failure of an IPAM plugin's ADD or DEL. Its message
// names the plugin, the command and the CNI error code, never what the
// plugin said: a plugin's message may quote what it read (whereabouts
// quotes the configuration file it failed to parse), and this error goes
// to kubelet and into Events that namespace users read. The plugin's own
// text is in Output and in the daemon's log.
type PluginError struct {
	Plugin  string
	Command string // ADD or DEL
	// Code is the CNI error code the plugin returned, 0 when it returned
	// none (a crash, a result that could not be used).
	Code uint
	// Output is the plugin's own message: for the node's log only.
	Output string
}

func (e *PluginError) Error() string {
	code := ""
	if e.Code != 0 {
		code = fmt.Sprintf(" with CNI error code %d (%s)", e.Code, cniCodeMeaning(e.Code))
	}
	return fmt.Sprintf("failed%s; the plugin's message is in the sriov-dra log on the node (not repeated here: it may quote what the plugin read)", code)
}

// pluginFailed logs a plugin's failure in full and returns it as a
// PluginError.
func pluginFailed(logger klog.Logger, plugin, cmd, containerID string, err error) error {
	logger.Error(err, "IPAM plugin failed", "plugin", plugin, "command", cmd, "containerID", containerID)
	pe := &PluginError{Plugin: plugin, Command: cmd, Output: err.Error()}
	var cniErr *cnitypes.Error
	if errors.As(err, &cniErr) {
		pe.Code = cniErr.Code
	}
	return pe
}

// cniCodeMeaning is what the CNI spec's well-known error codes mean.
func cniCodeMeaning(code uint) string {
	switch code {
	case cnitypes.ErrIncompatibleCNIVersion:
		return "incompatible CNI version"
	case cnitypes.ErrUnsupportedField:
		return "unsupported field in the network configuration"
	case cnitypes.ErrUnknownContainer:
		return "container unknown or does not exist"
	case cnitypes.ErrInvalidEnvironmentVariables:
		return "invalid necessary environment variables"
	case cnitypes.ErrIOFailure:
		return "I/O failure"
	case cnitypes.ErrDecodingFailure:
		return "failed to decode content"
	case cnitypes.ErrInvalidNetworkConfig:
		return "invalid network config"
	case cnitypes.ErrTryAgainLater:
		return "try again later"
	case cnitypes.ErrInternal:
		return "internal error"
	}
	return "plugin-specific"
}
