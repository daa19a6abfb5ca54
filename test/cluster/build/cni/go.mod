module github.com/sriov-dra/sriov-dra/test/cluster/build/cni

// Build-only module: static CNI plugins (the Debian ones are dynamically
// linked and cannot run inside the driver's libc-free image).

go 1.26.0

require github.com/containernetworking/plugins v1.9.1
