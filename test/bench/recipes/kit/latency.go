package kit

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ReadLatencies returns the sorted latencies (µs) of pgbench's
// per-transaction logs PREFIX.*: "client_id transaction_no time ...", where
// time is the latency in microseconds (or "failed"/"skipped", skipped here).
func ReadLatencies(prefix string) ([]float64, error) {
	files, _ := filepath.Glob(prefix + ".*")
	if len(files) == 0 {
		return nil, fmt.Errorf("no pgbench log files %s.*", prefix)
	}
	var lats []float64
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 3 {
				continue
			}
			if v, err := strconv.ParseFloat(fields[2], 64); err == nil {
				lats = append(lats, v)
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, err
		}
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
