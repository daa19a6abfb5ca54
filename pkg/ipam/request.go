package ipam

// This file turns a Request into what a CNI IPAM plugin reads: it checks
// the request's names, builds the network config and CNI_ARGS, and turns
// the plugin's result into a Result.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	cnitypes "github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	v1alpha1 "github.com/sriov-dra/sriov-dra/api/v1alpha1"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
)

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

// checkPluginName refuses anything but a bare binary name, by the rule
// `sriov-dra validate` checks ipam.type with.
func checkPluginName(name string) error {
	if err := v1alpha1.CheckPluginName(name); err != nil {
		return fmt.Errorf("plugin name %q: %w", name, err)
	}
	return nil
}

// cniName is the CNI spec's rule for network names and container IDs.
var cniName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)

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
