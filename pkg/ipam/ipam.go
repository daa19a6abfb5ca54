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

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	cnitypes "github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
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

// cniName is the CNI spec's rule for network names and container IDs.
var cniName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)

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

// netConf validates the request's ipam object and builds the network
// config passed on stdin. It returns the plugin name.
func (a *Allocator) netConf(req Request) (string, json.RawMessage, error) {
	if len(bytes.TrimSpace(req.IPAM)) == 0 {
		return "", nil, errors.New("ipam: no IPAM config")
	}
	var ipamObj map[string]any
	if err := json.Unmarshal(req.IPAM, &ipamObj); err != nil {
		return "", nil, fmt.Errorf("ipam: not a JSON object: %w", err)
	}
	if ipamObj == nil {
		return "", nil, errors.New("ipam: not a JSON object")
	}
	t, ok := ipamObj["type"].(string)
	if !ok {
		return "", nil, errors.New("ipam.type: missing or not a string")
	}
	if err := checkPluginName(t); err != nil {
		return t, nil, fmt.Errorf("ipam.type: %w", err)
	}
	if a.dataDir != "" && t == "host-local" {
		// host-local decodes its config with Go's case-insensitive field
		// matching: a "datadir" or "DATADIR" key would beat ours.
		for k := range ipamObj {
			if strings.EqualFold(k, "dataDir") {
				delete(ipamObj, k)
			}
		}
		ipamObj["dataDir"] = a.dataDir
	}
	conf := map[string]any{
		"cniVersion": CNIVersion,
		"name":       network(req),
		"type":       t,
		"ipam":       ipamObj,
	}
	b, err := json.Marshal(conf)
	if err != nil {
		return t, nil, fmt.Errorf("ipam: encode network config: %w", err)
	}
	return t, b, nil
}

// checkPluginName refuses anything but a bare binary name.
func checkPluginName(name string) error {
	switch {
	case name == "":
		return errors.New("empty plugin name")
	case name == "." || name == ".." || strings.Contains(name, ".."):
		return fmt.Errorf("plugin name %q must be a bare name", name)
	case strings.ContainsAny(name, `/\`):
		return fmt.Errorf("plugin name %q must be a bare name without path separators", name)
	case !cniName.MatchString(name):
		return fmt.Errorf("plugin name %q has characters outside [a-zA-Z0-9_.-]", name)
	}
	return nil
}

func validateRequest(req Request) error {
	if !cniName.MatchString(req.ClaimUID) {
		return fmt.Errorf("claim UID %q: must match %s", req.ClaimUID, cniName)
	}
	if !cniName.MatchString(req.Device) {
		return fmt.Errorf("device name %q: must match %s", req.Device, cniName)
	}
	if req.Network != "" && !cniName.MatchString(req.Network) {
		return fmt.Errorf("network name %q: must match %s", req.Network, cniName)
	}
	if err := checkIfName(req.IfName); err != nil {
		return fmt.Errorf("ifName: %w", err)
	}
	for field, v := range map[string]string{"pod name": req.PodName, "pod namespace": req.PodNamespace, "pod UID": req.PodUID} {
		if strings.ContainsAny(v, ";=\x00") {
			return fmt.Errorf("%s %q: must not contain ';', '=' or NUL", field, v)
		}
	}
	return nil
}

// checkIfName applies the CNI spec's interface name rules.
func checkIfName(name string) error {
	switch {
	case name == "":
		return errors.New("empty interface name")
	case len(name) > 15:
		return fmt.Errorf("interface name %q is longer than 15 bytes", name)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is not allowed", name)
	case strings.ContainsAny(name, "/: \t\n\v\f\r\x00"):
		return fmt.Errorf("interface name %q contains '/', ':' or white space", name)
	}
	return nil
}

func network(req Request) string {
	if req.Network == "" {
		return DefaultNetwork
	}
	return req.Network
}

func cniArgs(req Request) string {
	// IgnoreUnknown: plugins that do not know the K8S_* keys must not fail.
	return strings.Join([]string{
		"IgnoreUnknown=1",
		"K8S_POD_NAMESPACE=" + req.PodNamespace,
		"K8S_POD_NAME=" + req.PodName,
		"K8S_POD_UID=" + req.PodUID,
	}, ";")
}

// fillResult converts the plugin's result to plain data.
func fillResult(res *Result, r cnitypes.Result) error {
	raw, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	cr, err := current.NewResultFromResult(r)
	if err != nil {
		return fmt.Errorf("convert result: %w", err)
	}
	if len(cr.IPs) == 0 {
		return errors.New("plugin returned no addresses")
	}
	res.Raw = raw
	res.IPs = res.IPs[:0]
	for _, ip := range cr.IPs {
		c := IPConfig{Address: ip.Address.String()}
		if ip.Gateway != nil {
			c.Gateway = ip.Gateway.String()
		}
		res.IPs = append(res.IPs, c)
	}
	res.Routes = nil
	for _, rt := range cr.Routes {
		if rt == nil {
			continue
		}
		r := netattach.Route{Dst: rt.Dst.String()}
		if rt.GW != nil {
			r.GW = rt.GW.String()
		}
		res.Routes = append(res.Routes, r)
	}
	res.DNS = DNS{
		Nameservers: cr.DNS.Nameservers,
		Domain:      cr.DNS.Domain,
		Search:      cr.DNS.Search,
		Options:     cr.DNS.Options,
	}
	return nil
}

// withPrevResult adds "prevResult" to a network config, as the CNI spec
// asks for DEL.
func withPrevResult(netconf, prev json.RawMessage) ([]byte, error) {
	if len(netconf) == 0 {
		return nil, errors.New("no network config recorded")
	}
	if len(prev) == 0 {
		return netconf, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(netconf, &m); err != nil {
		return nil, fmt.Errorf("decode recorded network config: %w", err)
	}
	m["prevResult"] = prev
	return json.Marshal(m)
}

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
