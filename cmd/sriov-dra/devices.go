package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	v1alpha1 "github.com/sriov-dra/sriov-dra/api/v1alpha1"
	"github.com/sriov-dra/sriov-dra/internal/cliout"
	"github.com/sriov-dra/sriov-dra/pkg/devicesview"
	"github.com/sriov-dra/sriov-dra/pkg/kubeapi"
)

// kubectlPluginName is the file name under which the binary acts as the
// kubectl plugin "kubectl sriov" (a symlink or copy on PATH).
const kubectlPluginName = "kubectl-sriov"

// clientFunc makes the API client from the --kubeconfig and --context flags.
type clientFunc func(kubeconfig, context string) (devicesview.API, error)

// newKubeClient loads the client config as kubectl does: --kubeconfig,
// else $KUBECONFIG, else ~/.kube/config, else the in-cluster config.
func newKubeClient(kubeconfig, context string) (devicesview.API, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig (--kubeconfig, KUBECONFIG, ~/.kube/config or in-cluster): %w", err)
	}
	cfg.UserAgent = "sriov-dra-devices"
	c, err := kubeapi.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func newDevicesCmd() *cobra.Command { return newDevicesCmdWith(newKubeClient) }

func newDevicesCmdWith(newClient clientFunc) *cobra.Command {
	var (
		kubeconfig, kubeContext string
		output, node, driver    string
	)
	cmd := &cobra.Command{
		Use:   "devices",
		Short: "List the driver's devices in the cluster and who holds them",
		Long: `devices reads the ResourceSlices of the driver and the ResourceClaims that
allocated their devices, and prints one table for the cluster: node, device,
kind, PF, VF index, link type, VLAN, InfiniBand GUID, NUMA node, and the
namespace, pod(s) (the claim's status.reservedFor) and claim holding the
device. A device held by a claim but no longer published by its node is
marked "(not published)". It only reads; the user needs list on
resourceslices and resourceclaims (all namespaces).

Installed as "kubectl-sriov" on PATH (a symlink to or copy of this binary),
"kubectl sriov [flags]" runs this command.`,
		Example: `  sriov-dra devices
  sriov-dra devices --node worker-3 -o yaml
  kubectl sriov --node worker-3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cliout.Check(output); err != nil {
				return exitError{code: 2, err: err}
			}
			client, err := newClient(kubeconfig, kubeContext)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			v, err := devicesview.Collect(ctx, client, devicesview.Options{Driver: driver, Node: node})
			if err != nil {
				return err
			}
			return v.Write(cmd.OutOrStdout(), output)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster config)")
	f.StringVar(&kubeContext, "context", "", "kubeconfig context to use (default: the current context)")
	f.StringVarP(&output, "output", "o", devicesview.FormatTable, "output format: table, json or yaml")
	f.StringVar(&node, "node", "", "show only this node's devices")
	f.StringVar(&driver, "driver", v1alpha1.DriverName, "DRA driver name whose devices are shown")
	return cmd
}

// asKubectlPlugin makes root behave as "kubectl sriov" when the binary was
// started as kubectl-sriov: kubectl runs it with the arguments after
// "kubectl sriov". Without a subcommand name first, they go to devices;
// "kubectl sriov devices ...", "kubectl sriov version" work too.
func asKubectlPlugin(root *cobra.Command, argv []string) {
	if len(argv) == 0 || strings.TrimSuffix(filepath.Base(argv[0]), ".exe") != kubectlPluginName {
		return
	}
	if root.Annotations == nil {
		root.Annotations = map[string]string{}
	}
	root.Annotations[cobra.CommandDisplayNameAnnotation] = "kubectl sriov"
	args := argv[1:]
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		if args[0] == "help" || args[0] == "completion" {
			root.SetArgs(args)
			return
		}
		for _, c := range root.Commands() {
			if c.Name() == args[0] || c.HasAlias(args[0]) {
				root.SetArgs(args)
				return
			}
		}
	}
	root.SetArgs(append([]string{"devices"}, args...))
}
