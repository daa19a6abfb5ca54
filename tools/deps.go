//go:build tools

// Package tools pins dependencies that sriov-dra's packages will import, so
// `go mod tidy` keeps them while the packages are being written.
package tools

import (
	_ "github.com/Mellanox/rdmamap"
	_ "github.com/containerd/nri/pkg/adaptation"
	_ "github.com/containerd/nri/pkg/stub"
	_ "github.com/containernetworking/cni/libcni"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "github.com/vishvananda/netlink"
	_ "github.com/vishvananda/netns"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/component-base/metrics"
	_ "k8s.io/dynamic-resource-allocation/cel"
	_ "k8s.io/dynamic-resource-allocation/deviceattribute"
	_ "k8s.io/dynamic-resource-allocation/kubeletplugin"
	_ "k8s.io/dynamic-resource-allocation/resourceslice"
	_ "k8s.io/klog/v2"
	_ "k8s.io/kubelet/pkg/apis/dra/v1"
	_ "sigs.k8s.io/yaml"
	_ "tags.cncf.io/container-device-interface/pkg/cdi"
	_ "tags.cncf.io/container-device-interface/specs-go"
)
