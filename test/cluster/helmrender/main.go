//go:build ignore

// helmrender prints the Helm chart deployments/helm/sriov-dra rendered for
// its default values, as `helm template` would, for the e2e test that
// applies it to the cluster with a server-side dry run.
//
// It is not part of the product module (the build tag keeps it out, and go
// mod tidy skips files tagged ignore): e2e.sh copies it next to the go.mod
// and go.sum of test/helm, the module that already pins Helm for the chart
// check, and runs it there. So Helm's version is kept in one place.
//
//	go run -tags ignore . -chart <dir> -namespace sriov-dra -kube-version v1.37.2 > chart.yaml
package main

import (
	"flag"
	"fmt"
	"os"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
)

func main() {
	chartDir := flag.String("chart", "", "chart directory")
	namespace := flag.String("namespace", "sriov-dra", "release namespace")
	kubeVersion := flag.String("kube-version", "v1.37.2", "Kubernetes version the chart is rendered for")
	flag.Parse()
	if err := render(*chartDir, *namespace, *kubeVersion); err != nil {
		fmt.Fprintf(os.Stderr, "helmrender: %v\n", err)
		os.Exit(1)
	}
}

func render(chartDir, namespace, kubeVersion string) error {
	if chartDir == "" {
		return fmt.Errorf("-chart is required")
	}
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return fmt.Errorf("load chart %s: %w", chartDir, err)
	}
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		return fmt.Errorf("-kube-version %q: %w", kubeVersion, err)
	}
	install := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	install.DryRun = true
	install.DryRunOption = "client"
	install.ClientOnly = true
	install.Replace = true
	install.ReleaseName = "sriov-dra"
	install.Namespace = namespace
	install.KubeVersion = kv
	rel, err := install.Run(chrt, map[string]any{})
	if err != nil {
		return fmt.Errorf("render chart %s: %w", chartDir, err)
	}
	_, err = fmt.Print(rel.Manifest)
	return err
}
