// Package ipam allocates and releases a prepared device's IP addresses by
// running a CNI IPAM plugin binary (host-local, static, ...) the way a
// container runtime would, but for IPAM only: no interface is created and no
// network namespace is entered.
//
// Every call runs the plugin with CNI_COMMAND=ADD or DEL and a network config
// that wraps the claim's "ipam" object:
//
//	{"cniVersion": "1.0.0", "name": <network>, "type": <ipam type>, "ipam": {...}}
//
// CNI_CONTAINERID is "<claim UID>-<device name>", so one claim's devices are
// distinct allocations, and CNI_ARGS carries the pod's name, namespace and UID.
// The Result of Allocate is plain data that is safe to checkpoint; Release
// needs nothing but that Result, so it works after a restart.
package ipam

// This file holds the Allocator: Intent, Allocate and Release, and the
// Result they record.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/netattach"
)

const (
	// CNIVersion is the CNI spec version of the network config passed to
	// the plugins.
	CNIVersion = "1.0.0"
	// DefaultCNIPath is where plugin binaries are looked up by default.
	DefaultCNIPath = "/opt/cni/bin"
	// DefaultNetwork is the network name used when a request names none.
	// host-local keeps its allocations per network name, so every claim
	// sharing a range must share the name: one default for all of them
	// means two claims with the same range never get the same address.
	DefaultNetwork = "sriov-dra"
	// IPAMOnlyNetNS is passed as CNI_NETNS. The CNI library requires a
	// non-empty value for ADD; IPAM-only plugins (host-local, static) never
	// open it, and it is not the plugin's own namespace, which newer skel
	// versions reject.
	IPAMOnlyNetNS = "/dev/null"

	// releaseTimeout bounds the DEL that undoes a failed ADD when the
	// caller's context is already done.
	releaseTimeout = 30 * time.Second
)

// Config is how the Allocator finds and runs plugins.
type Config struct {
	// CNIPath lists the directories searched for IPAM plugin binaries, in
	// order. Empty means DefaultCNIPath.
	CNIPath []string
	// DataDir, when set, replaces the "dataDir" of every host-local config
	// (the directory where host-local records its allocations). The claim
	// config is user input: with DataDir set, users cannot point the
	// plugin, which runs as root, at another directory.
	DataDir string
}

// Allocator runs CNI IPAM plugins. It holds no state of its own: the
// plugins keep theirs (host-local in its data dir). Safe for concurrent use.
type Allocator struct {
	paths   []string
	dataDir string
}

// New returns an Allocator for cfg.
func New(cfg Config) *Allocator {
	paths := cfg.CNIPath
	if len(paths) == 0 {
		paths = []string{DefaultCNIPath}
	}
	return &Allocator{paths: append([]string(nil), paths...), dataDir: cfg.DataDir}
}

// Request is one device's address allocation.
type Request struct {
	ClaimUID string // ResourceClaim UID
	Device   string // ResourceSlice device name
	// IfName is the interface name in the pod (CNI_IFNAME).
	IfName string
	// Network is the CNI network name; "" means DefaultNetwork.
	Network string
	// Pod the claim is reserved for, passed in CNI_ARGS.
	PodName      string
	PodNamespace string
	PodUID       string
	// IPAM is the claim config's "ipam" object; its "type" names the
	// plugin binary.
	IPAM json.RawMessage
}

// IPConfig is one allocated address.
type IPConfig struct {
	Address string `json:"address"`           // CIDR, "10.1.0.5/24"
	Gateway string `json:"gateway,omitempty"` // "" when none
}

// DNS is the DNS configuration an IPAM plugin returned.
type DNS struct {
	Nameservers []string `json:"nameservers,omitempty"`
	Domain      string   `json:"domain,omitempty"`
	Search      []string `json:"search,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// Result is one device's allocation: what to configure in the pod and all
// Release needs. Plain data, safe to checkpoint as JSON.
type Result struct {
	Plugin      string            `json:"plugin"`
	Network     string            `json:"network"`
	ContainerID string            `json:"containerID"`
	IfName      string            `json:"ifName"`
	IPs         []IPConfig        `json:"ips"`
	Routes      []netattach.Route `json:"routes,omitempty"`
	DNS         DNS               `json:"dns,omitzero"`
	// Args is the CNI_ARGS string the allocation was made with.
	Args string `json:"args,omitempty"`
	// NetConf is the network config the plugin was run with (without the
	// previous result); Release runs DEL with it.
	NetConf json.RawMessage `json:"netConf"`
	// Raw is the plugin's result, in the CNI version of NetConf.
	Raw json.RawMessage `json:"raw"`
}

// Addresses returns the allocated addresses as CIDRs.
func (r *Result) Addresses() []string {
	out := make([]string, 0, len(r.IPs))
	for _, ip := range r.IPs {
		out = append(out, ip.Address)
	}
	return out
}

// ContainerID is the CNI_CONTAINERID of a claim's device.
func ContainerID(claimUID, device string) string { return claimUID + "-" + device }

// Intent returns the allocation Allocate(req) would make, without its
// addresses: enough for Release to undo an ADD whose result was never
// recorded (the caller died between the plugin's ADD and its own record).
// It validates req like Allocate and runs nothing.
func (a *Allocator) Intent(req Request) (*Result, error) {
	plugin, netconf, err := a.netConf(req)
	if err != nil {
		return nil, fmt.Errorf("IPAM for claim %s device %s: %w", req.ClaimUID, req.Device, err)
	}
	if err := validateRequest(req); err != nil {
		return nil, fmt.Errorf("IPAM plugin %q for claim %s device %s: %w", plugin, req.ClaimUID, req.Device, err)
	}
	return &Result{
		Plugin: plugin, Network: network(req), ContainerID: ContainerID(req.ClaimUID, req.Device),
		IfName: req.IfName, Args: cniArgs(req), NetConf: netconf,
	}, nil
}

// Allocate runs the IPAM plugin's ADD for req. On any failure after the
// plugin may have allocated (plugin error, unusable result), it runs DEL so
// nothing stays allocated, and returns an error naming the plugin, claim
// and device.
func (a *Allocator) Allocate(ctx context.Context, req Request) (*Result, error) {
	logger := klog.FromContext(ctx)
	plugin, netconf, err := a.netConf(req)
	if err != nil {
		return nil, fmt.Errorf("IPAM for claim %s device %s: %w", req.ClaimUID, req.Device, err)
	}
	if err := validateRequest(req); err != nil {
		return nil, fmt.Errorf("IPAM plugin %q for claim %s device %s: %w", plugin, req.ClaimUID, req.Device, err)
	}
	res := &Result{
		Plugin:      plugin,
		Network:     network(req),
		ContainerID: ContainerID(req.ClaimUID, req.Device),
		IfName:      req.IfName,
		Args:        cniArgs(req),
		NetConf:     netconf,
	}
	fail := func(err error) (*Result, error) {
		return nil, fmt.Errorf("IPAM plugin %q ADD for claim %s device %s: %w", plugin, req.ClaimUID, req.Device, err)
	}
	pluginPath, err := invoke.FindInPath(plugin, a.paths)
	if err != nil {
		return fail(fmt.Errorf("plugin binary not found in %s: %w", strings.Join(a.paths, ":"), err))
	}

	start := time.Now()
	var stderr bytes.Buffer
	exec := &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: &stderr}}
	raw, addErr := invoke.ExecPluginWithResult(ctx, pluginPath, netconf, a.args("ADD", res), exec)
	logStderr(logger, plugin, "ADD", &stderr)
	if addErr == nil {
		addErr = fillResult(res, raw)
	}
	if addErr != nil {
		addErr = pluginFailed(logger, plugin, "ADD", res.ContainerID, addErr)
	}
	if addErr != nil {
		// The plugin may have allocated part of what it was asked for
		// (several ranges) or all of it (a result we cannot use): undo.
		if delErr := a.release(ctx, res, nil); delErr != nil {
			logger.Error(delErr, "Undoing a failed IPAM allocation failed; addresses may stay allocated",
				"plugin", plugin, "claim", req.ClaimUID, "device", req.Device)
			return fail(errors.Join(addErr, fmt.Errorf("undo with DEL: %w", delErr)))
		}
		return fail(addErr)
	}
	logger.V(2).Info("Allocated addresses", "plugin", plugin, "claim", req.ClaimUID, "device", req.Device,
		"ips", res.Addresses(), "duration", time.Since(start))
	return res, nil
}

// Release runs the plugin's DEL for an allocation made by Allocate. It is
// idempotent: releasing twice, or releasing what the plugin does not know,
// succeeds. A nil result is nothing to release.
func (a *Allocator) Release(ctx context.Context, res *Result) error {
	if res == nil {
		return nil
	}
	return a.release(ctx, res, res.Raw)
}

func (a *Allocator) release(ctx context.Context, res *Result, prev json.RawMessage) error {
	logger := klog.FromContext(ctx)
	if err := checkPluginName(res.Plugin); err != nil {
		return fmt.Errorf("IPAM release of %s: ipam.type: %w", res.ContainerID, err)
	}
	fail := func(err error) error {
		return fmt.Errorf("IPAM plugin %q DEL of %s: %w", res.Plugin, res.ContainerID, err)
	}
	pluginPath, err := invoke.FindInPath(res.Plugin, a.paths)
	if err != nil {
		return fail(fmt.Errorf("plugin binary not found in %s: %w", strings.Join(a.paths, ":"), err))
	}
	netconf, err := withPrevResult(res.NetConf, prev)
	if err != nil {
		return fail(err)
	}
	if ctx.Err() != nil {
		// Undo must run even when the caller gave up.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
	}
	var stderr bytes.Buffer
	exec := &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: &stderr}}
	err = invoke.ExecPluginWithoutResult(ctx, pluginPath, netconf, a.args("DEL", res), exec)
	logStderr(logger, res.Plugin, "DEL", &stderr)
	if err != nil {
		return fail(pluginFailed(logger, res.Plugin, "DEL", res.ContainerID, err))
	}
	logger.V(2).Info("Released addresses", "plugin", res.Plugin, "containerID", res.ContainerID, "ips", res.Addresses())
	return nil
}

func (a *Allocator) args(cmd string, res *Result) *invoke.Args {
	return &invoke.Args{
		Command:       cmd,
		ContainerID:   res.ContainerID,
		NetNS:         IPAMOnlyNetNS,
		IfName:        res.IfName,
		PluginArgsStr: res.Args,
		Path:          strings.Join(a.paths, string(filepath.ListSeparator)),
	}
}
