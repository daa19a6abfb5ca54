package inventory

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	resourceapi "k8s.io/api/resource/v1"

	"github.com/sriov-dra/sriov-dra/internal/cliout"
)

// ReportDevice is one device as `sriov-dra inventory` shows it.
type ReportDevice struct {
	Name      string `json:"name"` // ResourceSlice device name
	Published bool   `json:"published"`
	// Reason says why a PF is not offered whole (see WholePFVerdicts).
	Reason     string                                                    `json:"reason,omitempty"`
	Device     Device                                                    `json:"device"`
	Attributes map[resourceapi.QualifiedName]resourceapi.DeviceAttribute `json:"attributes"`
}

// Report is an inventory with what the driver would publish of it.
type Report struct {
	Devices  []ReportDevice `json:"devices"`
	Excluded []Exclusion    `json:"excluded,omitempty"`
	Note     string         `json:"note,omitempty"`
	// VFProvisioning is the admin's VF config against the PFs, when one
	// was given: desired and actual VF counts per selected PF.
	VFProvisioning []ProvisioningRow `json:"vfProvisioning,omitempty"`
}

// ProvisioningRow is one PF the VF config selects.
type ProvisioningRow struct {
	PCIAddress string `json:"pciAddress"`
	IfName     string `json:"ifName,omitempty"`
	Desired    int    `json:"desiredVfs"`
	Actual     int    `json:"actualVfs"`
	Total      int    `json:"totalVfs"`
	VFDriver   string `json:"vfDriver,omitempty"`
	// State is ok, differs (the driver changes it once no VF of the PF
	// is prepared) or error.
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// Output formats of Report.Write.
const (
	FormatTable = cliout.Table
	FormatJSON  = cliout.JSON
	FormatYAML  = cliout.YAML
)

// NewReport pairs every device with its attributes, whether
// Publishable(passthroughPFs) keeps it and, for a PF not offered whole,
// why.
func NewReport(inv *Inventory, passthroughPFs []string) Report {
	pub := map[string]bool{}
	for _, d := range inv.Publishable(passthroughPFs) {
		pub[d.Name] = true
	}
	why := inv.WholePFVerdicts(passthroughPFs)
	r := Report{Devices: []ReportDevice{}, Excluded: inv.Excluded, Note: inv.Note}
	for _, d := range inv.Devices {
		r.Devices = append(r.Devices, ReportDevice{Name: d.Name, Published: pub[d.Name], Reason: why[d.Name], Device: d, Attributes: Attributes(d)})
	}
	return r
}

// Write prints the report as a table, JSON or YAML.
func (r Report) Write(w io.Writer, format string) error {
	if format == "" {
		format = FormatTable
	}
	return cliout.Write(w, format, "inventory", r, r.writeTable)
}

func (r Report) writeTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tPCI\tPF\tVF\tIFNAME\tDRIVER\tID\tLINK\tNUMA\tPCIE-ROOT\tIOMMU\tRDMA\tMAC\tVLAN\tGUID\tPKEYS\tESWITCH\tVFS\tPUBLISHED")
	for _, rd := range r.Devices {
		d := rd.Device
		vf, vfs, numa, vlan := "-", "-", "-", "-"
		if d.Kind == KindVF {
			vf = strconv.Itoa(d.VFIndex)
		} else {
			vfs = fmt.Sprintf("%d/%d", d.NumVFs, d.TotalVFs)
		}
		if d.NUMANode != NUMAUnknown {
			numa = strconv.Itoa(d.NUMANode)
		}
		mac := d.MAC
		if d.Admin != nil {
			if mac == "" {
				mac = d.Admin.MAC
			}
			if d.Admin.VLAN > 0 {
				vlan = strconv.Itoa(d.Admin.VLAN)
			}
		}
		pub := "no"
		if rd.Published {
			pub = "yes"
		}
		fmt.Fprintln(tw, strings.Join([]string{
			rd.Name, string(d.Kind), d.PCIAddress, dash(d.PFName), vf, dash(d.IfName), dash(d.Driver),
			d.Vendor + ":" + d.DeviceID, string(d.LinkType), numa, dash(d.PCIeRoot), dash(d.IOMMUGroup),
			dash(strings.Join(d.RDMADevices, ",")), dash(mac), vlan, dash(d.NodeGUID), dash(strings.Join(d.PKeys, ",")),
			dash(d.EswitchMode), vfs, pub,
		}, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, rd := range r.Devices {
		if rd.Reason != "" {
			if _, err := fmt.Fprintf(w, "PF %s (%s): %s\n", rd.Device.PCIAddress, dash(rd.Device.IfName), rd.Reason); err != nil {
				return err
			}
		}
	}
	for _, e := range r.Excluded {
		if _, err := fmt.Fprintf(w, "excluded %s: %s\n", e.PCIAddress, e.Reason); err != nil {
			return err
		}
	}
	if r.Note != "" {
		if _, err := fmt.Fprintf(w, "No SR-IOV devices listed: %s\n", r.Note); err != nil {
			return err
		}
	}
	return r.writeProvisioning(w)
}

// writeProvisioning prints the VF config section, when there is one.
func (r Report) writeProvisioning(w io.Writer) error {
	if r.VFProvisioning == nil {
		return nil
	}
	if _, err := fmt.Fprintln(w, "\nVF provisioning (--vf-config):"); err != nil {
		return err
	}
	if len(r.VFProvisioning) == 0 {
		_, err := fmt.Fprintln(w, "the config selects no PF of this node")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PF\tIFNAME\tDESIRED\tACTUAL\tTOTAL\tVF-DRIVER\tSTATE")
	for _, p := range r.VFProvisioning {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", p.PCIAddress, dash(p.IfName), p.Desired, p.Actual, p.Total, dash(p.VFDriver), p.State)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range r.VFProvisioning {
		if p.Reason != "" {
			if _, err := fmt.Fprintf(w, "PF %s: %s\n", p.PCIAddress, p.Reason); err != nil {
				return err
			}
		}
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
