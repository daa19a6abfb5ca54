module github.com/sriov-dra/sriov-dra/test/cluster/build/etcd

// Build-only module: pins the etcd release the cluster harness runs.

go 1.26.0

require go.etcd.io/etcd/server/v3 v3.6.16
