package nri

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/utils/cpuset"

	"github.com/sriov-dra/sriov-dra/pkg/irq"
)

// unionCPUs returns the union of the cpusets (CPU lists such as "0-3,8")
// as a canonical CPU list. Empty cpusets add nothing; the union of none is
// "". A malformed cpuset, or one naming a CPU beyond irq.MaxCPUs (the
// runtime's value is not trusted to be sane), is an error that names the
// container; irq.Set checks the union against the machine's own CPUs.
func unionCPUs(byContainer map[string]string) (string, error) {
	ids := make([]string, 0, len(byContainer))
	for id := range byContainer {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	union := cpuset.New()
	for _, id := range ids {
		s := strings.TrimSpace(byContainer[id])
		if s == "" {
			continue
		}
		cpus, err := irq.ParseCPUList(s, irq.MaxCPUs)
		if err != nil {
			return "", fmt.Errorf("cpuset of container %s: %w", id, err)
		}
		union = union.Union(cpus)
	}
	return union.String(), nil
}
