package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

func newInventoryCmd() *cobra.Command {
	var (
		hostRoot     string
		output       string
		filterFile   string
		passthrough  []string
		allowDefault bool
	)
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "List the node's SR-IOV devices as the driver would publish them",
		Long: `List every SR-IOV PF (a device with sriov_totalvfs) and its VFs with their
attributes, the device name used in the ResourceSlice, and whether the driver
publishes the device: every VF, and a PF (instead of its VFs) only when listed
with --passthrough-pfs, as the driver's own --passthrough-pfs, and the host
does not use its netdev (global addresses, routes in any table, a master or
upper links); each PF not offered whole gets a line saying why. Reads sysfs
under --host-root and netlink in the current network namespace; it changes
nothing. With a fixture as --host-root the VF admin state stays empty and a
listed PF is refused (the PFs are not in this netns, so their use cannot be
read).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch output {
			case inventory.FormatTable, inventory.FormatJSON, inventory.FormatYAML:
			default:
				return exitError{code: 2, err: fmt.Errorf("--output %q: want table, json or yaml", output)}
			}
			var filter inventory.Filter
			if filterFile != "" {
				f, err := inventory.LoadFilter(filterFile)
				if err != nil {
					return exitError{code: 2, err: fmt.Errorf("--filter-file: %w", err)}
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
			return inventory.NewReport(inv, passthrough).Write(cmd.OutOrStdout(), output)
		},
	}
	f := cmd.Flags()
	f.StringVar(&hostRoot, "host-root", "/", "host filesystem root; sysfs is read at <host-root>/sys")
	f.StringVarP(&output, "output", "o", inventory.FormatTable, "output format: table, json or yaml")
	f.StringVar(&filterFile, "filter-file", "", "YAML/JSON device filter (pfNames, pciAddresses, vendors, drivers, linkTypes)")
	f.StringSliceVar(&passthrough, "passthrough-pfs", nil, "PFs (netdev names or PCI addresses) the driver is told to offer whole (its --passthrough-pfs)")
	f.BoolVar(&allowDefault, "allow-default-route-pf", false, "list the PF that carries the node's default route too")
	return cmd
}
