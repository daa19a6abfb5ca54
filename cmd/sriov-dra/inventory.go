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
publishes the device (all VFs; a PF only with no VFs enabled or when listed
with --passthrough-pf). Reads sysfs under --host-root and netlink in the
current network namespace; it changes nothing. With a fixture as --host-root
the VF admin state stays empty (the PFs are not in this netns).`,
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
	f.StringSliceVar(&passthrough, "passthrough-pf", nil, "PF netdev names or PCI addresses offered whole even with VFs enabled")
	f.BoolVar(&allowDefault, "allow-default-route-pf", false, "list the PF that carries the node's default route too")
	return cmd
}
