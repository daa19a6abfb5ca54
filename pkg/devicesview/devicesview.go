// Package devicesview is the cluster-wide admin view of the driver's
// devices: what its ResourceSlices publish, joined with the ResourceClaims
// that allocated them. It only reads the API server.
package devicesview

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/sriov-dra/sriov-dra/internal/cliout"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

// Output formats of Write.
const (
	FormatTable = cliout.Table
	FormatJSON  = cliout.JSON
	FormatYAML  = cliout.YAML
)

// listPageSize bounds one List call; large clusters are read in pages.
const listPageSize = 500

// Options selects what Collect reads.
type Options struct {
	// Driver is the DRA driver name whose slices and allocations are read.
	Driver string
	// Node limits the view to one node; "" is the whole cluster.
	Node string
}

// Holder is the claim an allocated device belongs to and the pods the
// claim is reserved for (none yet between allocation and pod start).
type Holder struct {
	Namespace string   `json:"namespace"`
	Claim     string   `json:"claim"`
	Pods      []string `json:"pods,omitempty"`
}

// Device is one row of the view.
type Device struct {
	Node       string `json:"node"`
	Pool       string `json:"pool"`
	Device     string `json:"device"`
	Kind       string `json:"kind,omitempty"`
	PCIAddress string `json:"pciAddress,omitempty"`
	// PF is the parent PF's netdev name, or its PCI address when it has
	// no netdev; for a PF its own name.
	PF         string `json:"pf,omitempty"`
	VFIndex    *int64 `json:"vfIndex,omitempty"`
	LinkType   string `json:"linkType,omitempty"`
	VLAN       *int64 `json:"vlan,omitempty"`
	GUID       string `json:"guid,omitempty"`
	NUMANode   *int64 `json:"numaNode,omitempty"`
	RDMADevice string `json:"rdmaDevice,omitempty"`
	// Holder is nil for a free device.
	Holder *Holder `json:"holder,omitempty"`
	// Published is false for a device a claim holds that the node's
	// current slices no longer list (the node or the driver is gone, or
	// the device disappeared).
	Published bool `json:"published"`
}

// View is the result of Collect, sorted by node, then device.
type View struct {
	Driver  string   `json:"driver"`
	Node    string   `json:"node,omitempty"`
	Devices []Device `json:"devices"`
	// Total, Allocated and Free count the published devices.
	Total     int `json:"total"`
	Allocated int `json:"allocated"`
	Free      int `json:"free"`
}

type deviceKey struct{ pool, device string }

// Collect lists the driver's ResourceSlices and all ResourceClaims and
// joins them. Only the newest generation of each pool counts: older
// slices are left over from a republish in progress.
func Collect(ctx context.Context, client API, opts Options) (*View, error) {
	if opts.Driver == "" {
		return nil, fmt.Errorf("driver name is required")
	}
	sliceList, err := listSlices(ctx, client, opts)
	if err != nil {
		return nil, err
	}
	claims, err := listClaims(ctx, client)
	if err != nil {
		return nil, err
	}

	newest := map[string]int64{}
	for _, s := range sliceList {
		if g, ok := newest[s.Spec.Pool.Name]; !ok || s.Spec.Pool.Generation > g {
			newest[s.Spec.Pool.Name] = s.Spec.Pool.Generation
		}
	}
	rows := map[deviceKey]*Device{}
	for _, s := range sliceList {
		if s.Spec.Pool.Generation != newest[s.Spec.Pool.Name] {
			continue
		}
		node := ""
		if s.Spec.NodeName != nil {
			node = *s.Spec.NodeName
		}
		for _, d := range s.Spec.Devices {
			row := fromAttributes(opts.Driver, d.Attributes)
			row.Node, row.Pool, row.Device, row.Published = node, s.Spec.Pool.Name, d.Name, true
			rows[deviceKey{s.Spec.Pool.Name, d.Name}] = &row
		}
	}

	for _, c := range claims {
		if c.Status.Allocation == nil {
			continue
		}
		holder := holderOf(&c)
		for _, r := range c.Status.Allocation.Devices.Results {
			if r.Driver != opts.Driver {
				continue
			}
			k := deviceKey{r.Pool, r.Device}
			row, ok := rows[k]
			if !ok {
				// The driver names its pool after the node.
				if opts.Node != "" && r.Pool != opts.Node {
					continue
				}
				row = &Device{Node: r.Pool, Pool: r.Pool, Device: r.Device}
				rows[k] = row
			}
			h := holder
			row.Holder = &h
		}
	}

	v := &View{Driver: opts.Driver, Node: opts.Node, Devices: make([]Device, 0, len(rows))}
	for _, r := range rows {
		v.Devices = append(v.Devices, *r)
		if !r.Published {
			continue
		}
		v.Total++
		if r.Holder != nil {
			v.Allocated++
		} else {
			v.Free++
		}
	}
	slices.SortFunc(v.Devices, func(a, b Device) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Pool, b.Pool), cmp.Compare(a.Device, b.Device))
	})
	return v, nil
}

// API is the API server as Collect reads it; *kubeapi.Client is one.
type API interface {
	ListSlices(ctx context.Context, opts metav1.ListOptions) (*resourceapi.ResourceSliceList, error)
	ListClaims(ctx context.Context, namespace string, opts metav1.ListOptions) (*resourceapi.ResourceClaimList, error)
}

func listSlices(ctx context.Context, client API, opts Options) ([]resourceapi.ResourceSlice, error) {
	sel := fields.Set{resourceapi.ResourceSliceSelectorDriver: opts.Driver}
	if opts.Node != "" {
		sel[resourceapi.ResourceSliceSelectorNodeName] = opts.Node
	}
	var out []resourceapi.ResourceSlice
	lo := metav1.ListOptions{FieldSelector: sel.AsSelector().String(), Limit: listPageSize}
	for {
		l, err := client.ListSlices(ctx, lo)
		if err != nil {
			return nil, fmt.Errorf("list ResourceSlices of driver %s: %w", opts.Driver, err)
		}
		for _, s := range l.Items {
			// The server filters by the field selector; check again so
			// the result does not depend on it (a server that ignores it).
			if s.Spec.Driver != opts.Driver {
				continue
			}
			if opts.Node != "" && (s.Spec.NodeName == nil || *s.Spec.NodeName != opts.Node) {
				continue
			}
			out = append(out, s)
		}
		if l.Continue == "" {
			return out, nil
		}
		lo.Continue = l.Continue
	}
}

func listClaims(ctx context.Context, client API) ([]resourceapi.ResourceClaim, error) {
	var out []resourceapi.ResourceClaim
	lo := metav1.ListOptions{Limit: listPageSize}
	for {
		l, err := client.ListClaims(ctx, metav1.NamespaceAll, lo)
		if err != nil {
			return nil, fmt.Errorf("list ResourceClaims in all namespaces: %w", err)
		}
		out = append(out, l.Items...)
		if l.Continue == "" {
			return out, nil
		}
		lo.Continue = l.Continue
	}
}

// holderOf is the claim and the pods in its status.reservedFor.
func holderOf(c *resourceapi.ResourceClaim) Holder {
	h := Holder{Namespace: c.Namespace, Claim: c.Name}
	for _, r := range c.Status.ReservedFor {
		if r.APIGroup == "" && r.Resource == "pods" {
			h.Pods = append(h.Pods, r.Name)
		}
	}
	slices.Sort(h.Pods)
	return h
}

// fromAttributes reads the row's columns from the device's attributes
// (the names of pkg/inventory). An attribute of the driver's own domain
// may also appear without its domain.
func fromAttributes(driver string, attrs map[resourceapi.QualifiedName]resourceapi.DeviceAttribute) Device {
	get := func(name resourceapi.QualifiedName) (resourceapi.DeviceAttribute, bool) {
		if a, ok := attrs[name]; ok {
			return a, true
		}
		short, found := strings.CutPrefix(string(name), driver+"/")
		if !found {
			return resourceapi.DeviceAttribute{}, false
		}
		a, ok := attrs[resourceapi.QualifiedName(short)]
		return a, ok
	}
	str := func(name resourceapi.QualifiedName) string {
		if a, ok := get(name); ok && a.StringValue != nil {
			return *a.StringValue
		}
		return ""
	}
	num := func(name resourceapi.QualifiedName) *int64 {
		if a, ok := get(name); ok && a.IntValue != nil {
			v := *a.IntValue
			return &v
		}
		return nil
	}
	d := Device{
		Kind:       str(inventory.AttrKind),
		PCIAddress: str(inventory.AttrPCIAddress),
		PF:         cmp.Or(str(inventory.AttrPFName), str(inventory.AttrPFPCIAddress)),
		LinkType:   str(inventory.AttrLinkType),
		GUID:       str(inventory.AttrGUID),
		RDMADevice: str(inventory.AttrRDMADevice),
		VFIndex:    num(inventory.AttrVFIndex),
		VLAN:       num(inventory.AttrVLAN),
		NUMANode:   num(inventory.AttrNUMANode),
	}
	if d.Kind == string(inventory.KindPF) {
		// A PF's pfName is its own netdev; show the same.
		d.PF = cmp.Or(str(inventory.AttrPFName), str(inventory.AttrIfName), d.PCIAddress)
	}
	return d
}

// Write prints the view as a table, JSON or YAML.
func (v *View) Write(w io.Writer, format string) error {
	return cliout.Write(w, format, "devices", v, v.writeTable)
}

func (v *View) writeTable(w io.Writer) error {
	if len(v.Devices) == 0 {
		where := "in the cluster"
		if v.Node != "" {
			where = "on node " + v.Node
		}
		_, err := fmt.Fprintf(w, "No devices of driver %s %s: is the driver running there, and does its node have SR-IOV PFs? (see docs/troubleshooting.md)\n", v.Driver, where)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tDEVICE\tKIND\tPF\tVF\tLINK\tVLAN\tGUID\tNUMA\tNAMESPACE\tPOD\tCLAIM")
	for _, d := range v.Devices {
		ns, pod, claim := "-", "-", "-"
		if d.Holder != nil {
			ns, claim = d.Holder.Namespace, d.Holder.Claim
			pod = "<none>"
			if len(d.Holder.Pods) > 0 {
				pod = strings.Join(d.Holder.Pods, ",")
			}
		}
		device := d.Device
		if !d.Published {
			device += " (not published)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			dash(d.Node), device, dash(d.Kind), dash(d.PF), numOrDash(d.VFIndex), dash(d.LinkType),
			numOrDash(d.VLAN), dash(d.GUID), numOrDash(d.NUMANode), ns, pod, claim)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%d devices: %d allocated, %d free\n", v.Total, v.Allocated, v.Free)
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func numOrDash(n *int64) string {
	if n == nil {
		return "-"
	}
	return strconv.FormatInt(*n, 10)
}
