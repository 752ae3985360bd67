package kit

import (
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"
)

// ReadLatencies returns the sorted latencies (µs) of pgbench's
// per-transaction logs PREFIX.* (ReadTxLogs), failing when there are none.
func ReadLatencies(prefix string) ([]float64, error) {
	if files, _ := filepath.Glob(prefix + ".*"); len(files) == 0 {
		return nil, fmt.Errorf("no pgbench log files %s.*", prefix)
	}
	txs, err := ReadTxLogs(prefix)
	if err != nil {
		return nil, err
	}
	lats := make([]float64, len(txs))
	for i, tx := range txs {
		lats[i] = tx.Us
	}
	sort.Float64s(lats)
	return lats, nil
}

// NearestRank is the p-quantile of sorted values by the nearest-rank method
// (NaN for none).
func NearestRank(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// LastLines joins the last n lines of s with " | ", for error messages.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
