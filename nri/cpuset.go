package nri

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/sriov-dra/sriov-dra/pkg/irq"
)

// unionCPUs returns the union of the cpusets (CPU lists such as "0-3,8")
// as a canonical CPU list. Empty cpusets add nothing; the union of none is
// "". A malformed cpuset, or one naming a CPU beyond irq.MaxCPUs (the
// runtime's value is not trusted to be sane), is an error that names the
// container; irq.Set checks the union against the machine's own CPUs.
func unionCPUs(byContainer map[string]string) (string, error) {
	set := map[int]bool{}
	ids := make([]string, 0, len(byContainer))
	for id := range byContainer {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		s := strings.TrimSpace(byContainer[id])
		if s == "" {
			continue
		}
		cpus, err := irq.ParseCPUList(s, irq.MaxCPUs)
		if err != nil {
			return "", fmt.Errorf("cpuset of container %s: %w", id, err)
		}
		for _, c := range cpus {
			set[c] = true
		}
	}
	return formatCPUs(set), nil
}

// formatCPUs writes a CPU set as a list of ranges, "0-3,8,10-11".
func formatCPUs(set map[int]bool) string {
	cpus := make([]int, 0, len(set))
	for c := range set {
		cpus = append(cpus, c)
	}
	sort.Ints(cpus)
	var b strings.Builder
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(cpus[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(cpus[j]))
		}
		i = j + 1
	}
	return b.String()
}
