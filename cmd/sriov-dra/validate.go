package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	v1alpha1 "github.com/sriov-dra/sriov-dra/api/v1alpha1"
)

func newValidateCmd() *cobra.Command {
	var file, driverName string
	cmd := &cobra.Command{
		Use:   "validate -f FILE",
		Short: "Check sriov.dra.dev device configs in YAML/JSON manifests",
		Long: `validate reads a bare VfConfig or PfConfig, or DeviceClass, ResourceClaim and
ResourceClaimTemplate objects (several YAML documents allowed, "-f -" reads stdin),
and checks every opaque config whose driver is --driver-name (sriov.dra.dev unless
the driver runs under another name) with the rules the driver applies. Parameters
of apiVersion sriov.dra.dev/v1alpha1 under another driver name are an error: the
driver would not apply them. The driver's NodeConfig (its --vf-config file) is
checked by the rules the driver reads it with. It prints each error with its object
and field path and exits 1 on any error; otherwise it prints a one-line summary and
exits 0.

A claim is checked against the policy of its DeviceClasses when they are in the input.
Rules that need objects the input lacks (what the class allows a claim to set; vlanQoS or
vlanProto 802.1ad while vlan must come from another object) are printed as warnings
("warning: ...") and checked when the driver prepares the claim; warnings alone exit 0.`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd.Flags())
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			var in io.Reader
			name := file
			if file == "-" {
				in, name = cmd.InOrStdin(), "stdin"
			} else {
				f, err := os.Open(file)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			rep, err := v1alpha1.CheckManifests(in, driverName)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			out := cmd.OutOrStdout()
			for _, p := range rep.Problems {
				fmt.Fprintln(out, p.String())
			}
			for _, w := range rep.Warnings {
				fmt.Fprintln(out, w.String())
			}
			if len(rep.Problems) > 0 {
				return fmt.Errorf("%s: %s", name, rep.Summary())
			}
			fmt.Fprintln(out, rep.Summary())
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", `file to check ("-" for stdin)`)
	cmd.Flags().StringVar(&driverName, "driver-name", v1alpha1.DriverName, "DRA driver name the configs must name, the driver's --driver-name [$"+envOf["driver-name"]+"]")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}
