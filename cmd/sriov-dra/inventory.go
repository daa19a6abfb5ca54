package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/internal/cliout"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
	"github.com/sriov-dra/sriov-dra/pkg/vfprov"
)

func newInventoryCmd() *cobra.Command {
	var (
		hostRoot     string
		output       string
		filterFile   string
		vfConfig     string
		passthrough  []string
		allowDefault bool
	)
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "List the node's SR-IOV devices as the driver would publish them",
		Long: `List every SR-IOV PF (a device with sriov_totalvfs) and its VFs with their
attributes, the device name used in the ResourceSlice, and whether the driver
publishes the device: every VF, and a PF (instead of its VFs) only when listed
with --passthrough-pfs, as the driver's own --passthrough-pfs, SR-IOV is off
on it (sriov_numvfs 0) and the host does not use its netdev (global addresses,
routes in any table, a master or upper links); each PF not offered whole gets
a line saying why. Reads sysfs
under --host-root and netlink in the current network namespace; it changes
nothing. With a fixture as --host-root the VF admin state stays empty and a
listed PF is refused (the PFs are not in this netns, so their use cannot be
read). With --vf-config a section lists, for every PF the VF config selects,
the desired and the actual VF count ("differs": the driver changes it once no
VF of that PF is prepared).

Flags not given are read from the driver's environment variables (HOST_ROOT,
DEVICE_FILTER, PASSTHROUGH_PFS, VF_CONFIG), so in the driver's pod
"kubectl exec <driver pod> -- sriov-dra inventory" shows what that driver
publishes.`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("filter-file") { // the old name wins over DEVICE_FILTER too
				if err := cmd.Flags().Set("device-filter", filterFile); err != nil {
					return err
				}
			}
			return applyEnv(cmd.Flags())
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cliout.Check(output); err != nil {
				return exitError{code: 2, err: err}
			}
			var filter inventory.Filter
			if filterFile != "" {
				f, err := inventory.LoadFilter(filterFile)
				if err != nil {
					return exitError{code: 2, err: fmt.Errorf("--device-filter: %w", err)}
				}
				filter = f
			}
			nl, err := nlink.NewHost()
			if err != nil {
				return err
			}
			defer nl.Close()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// Exclusions and the reason for an empty result are part of the
			// output; the scan's log would only repeat them on stderr,
			// unless the verbosity flags ask for its details.
			if !cmd.Flags().Changed("v") && !cmd.Flags().Changed("vmodule") {
				ctx = klog.NewContext(ctx, logr.Discard())
			}
			inv, err := inventory.Scan(ctx, inventory.Options{
				Root: hostRoot, Netlink: nl, Filter: filter, AllowDefaultRoutePF: allowDefault,
			})
			if err != nil {
				return err
			}
			report := inventory.NewReport(inv, passthrough)
			if vfConfig != "" {
				rows, err := provisioningRows(hostRoot, vfConfig)
				if err != nil {
					return err
				}
				report.VFProvisioning = rows
			}
			return report.Write(cmd.OutOrStdout(), output)
		},
	}
	f := cmd.Flags()
	f.StringVar(&hostRoot, "host-root", "/", "host filesystem root; sysfs is read at <host-root>/sys [$"+envOf["host-root"]+"]")
	f.StringVarP(&output, "output", "o", inventory.FormatTable, "output format: table, json or yaml")
	f.StringVar(&filterFile, "device-filter", "", "the driver's --device-filter file, YAML/JSON (pfNames, pciAddresses, vendors, drivers, linkTypes) [$"+envOf["device-filter"]+"]")
	f.StringVar(&filterFile, "filter-file", "", "the old name of --device-filter")
	_ = f.MarkDeprecated("filter-file", "use --device-filter, the driver's name for it")
	f.StringSliceVar(&passthrough, "passthrough-pfs", nil, "PFs (netdev names or PCI addresses) the driver is told to offer whole (its --passthrough-pfs) [$"+envOf["passthrough-pfs"]+"]")
	f.StringVar(&vfConfig, "vf-config", "", "the driver's --vf-config file: adds desired vs actual VFs of every PF it selects [$"+envOf["vf-config"]+"]")
	f.BoolVar(&allowDefault, "allow-default-route-pf", false, "list the PF that carries the node's default route too")
	return cmd
}

// provisioningRows plans the VF config against the PFs under root. The
// command does not read the checkpoint: a change shows as "differs"
// whether or not a prepared VF holds it back.
func provisioningRows(root, path string) ([]inventory.ProvisioningRow, error) {
	cfg, err := vfprov.Load(path)
	if err != nil {
		return nil, exitError{code: 2, err: fmt.Errorf("--vf-config: %w", err)}
	}
	pfs, err := vfprov.ScanPFs(root)
	if err != nil && len(pfs) == 0 {
		return nil, err
	}
	rows := []inventory.ProvisioningRow{}
	for _, st := range vfprov.Plan(root, cfg, pfs, nil) {
		state := string(st.State)
		if st.State == vfprov.StateApply {
			state = "differs"
		}
		rows = append(rows, inventory.ProvisioningRow{
			PCIAddress: st.PF.PCIAddress, IfName: st.PF.IfName, Desired: st.Desired, Actual: st.PF.NumVFs,
			Total: st.PF.TotalVFs, VFDriver: st.VFDriver, State: state, Reason: st.Reason,
		})
	}
	return rows, nil
}
