// Package vmtests holds the tests that run inside the QEMU VM of
// test/vm/run.sh (`make vmtest`), against real SR-IOV VFs of emulated Intel
// 82576 NICs driven by the kernel's igb and igbvf drivers. The tests carry
// the build tag `vmtest` and change real devices, so they also refuse to run
// unless the VM's /init set SRIOV_DRA_VMTEST=1.
package vmtests
