module github.com/sriov-dra/sriov-dra/test/cluster/build/containerd

// Build-only module: pins the containerd release the cluster harness runs.

go 1.26.6

require github.com/containerd/containerd/v2 v2.4.2
