package proxy

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Host memory checks, when PostgreSQL runs on this host (its target is a
// Unix socket directory, localhost or a loopback address): whether the
// kernel overcommits memory, and whether the OOM killer may pick the
// postmaster.

// procFS is the root of a proc file system: "/proc", or a directory in
// tests.
type procFS string

func (fs procFS) read(path string) (string, error) {
	b, err := os.ReadFile(filepath.Join(string(fs), path))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// hostIsLocal reports whether a database's host is this machine.
func hostIsLocal(host string) bool {
	if strings.HasPrefix(host, "/") || strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// hostItems reads vm.overcommit_memory and the postmaster's oom_score_adj.
// The postmaster is the parent of the advisor's own backend (backendPID).
// That pid is PostgreSQL's: it names the right process only when
// PostgreSQL shares this pid namespace (not in another container), which
// the process names confirm; otherwise the OOM check is left out.
func hostItems(backendPID uint32, fs procFS) []healthItem {
	var out []healthItem
	if v, err := fs.read("sys/vm/overcommit_memory"); err == nil {
		if n, err := strconv.Atoi(v); err == nil {
			out = append(out, overcommitItem(n))
		}
	}
	if ppid, ok := postmasterPID(backendPID, fs); ok {
		if v, err := fs.read(fmt.Sprintf("%d/oom_score_adj", ppid)); err == nil {
			if adj, err := strconv.Atoi(v); err == nil {
				backendAdj := 0
				if bv, err := fs.read(fmt.Sprintf("%d/oom_score_adj", backendPID)); err == nil {
					backendAdj, _ = strconv.Atoi(bv)
				}
				out = append(out, oomItem(adj, backendAdj))
			}
		}
	}
	return out
}

func isPostgresProcess(fs procFS, pid int) bool {
	comm, err := fs.read(fmt.Sprintf("%d/comm", pid))
	return err == nil && (comm == "postgres" || comm == "postmaster")
}

// postmasterPID finds the parent of a PostgreSQL backend in /proc.
func postmasterPID(backendPID uint32, fs procFS) (int, bool) {
	if backendPID == 0 || !isPostgresProcess(fs, int(backendPID)) {
		return 0, false
	}
	status, err := fs.read(fmt.Sprintf("%d/status", backendPID))
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "PPid:"); ok {
			ppid, err := strconv.Atoi(strings.TrimSpace(rest))
			if err != nil || ppid <= 1 || !isPostgresProcess(fs, ppid) {
				return 0, false
			}
			return ppid, true
		}
	}
	return 0, false
}

func overcommitItem(mode int) healthItem {
	names := map[int]string{0: "heuristic overcommit", 1: "always overcommit", 2: "no overcommit"}
	return healthItem{
		check: checkOvercommit, object: "vm.overcommit_memory", unit: unitSetting,
		value: float64(mode), threshold: 2, hasThreshold: true, crossed: mode != 2,
		advice: fmt.Sprintf("vm.overcommit_memory = %d (%s): the kernel promises memory it may not have and the OOM killer settles the bill; "+
			"when it kills any PostgreSQL process, the postmaster ends every session and runs crash recovery. "+
			"On a database host set vm.overcommit_memory = 2 (sysctl, with vm.overcommit_ratio or vm.overcommit_kbytes sized to the RAM) so an allocation fails and only that query gets an error",
			mode, names[mode]),
	}
}

func oomItem(adj, backendAdj int) healthItem {
	extra := ""
	if backendAdj == -1000 {
		extra = "; backends must stay killable (PG_OOM_ADJUST_VALUE=0)"
	}
	return healthItem{
		check: checkOOMScore, object: "postmaster", unit: unitSetting,
		value: float64(adj), threshold: -1000, hasThreshold: true, crossed: adj != -1000,
		advice: fmt.Sprintf("the postmaster's oom_score_adj is %d: the OOM killer may pick it, and with it the whole server. "+
			"Start PostgreSQL with oom_score_adj = -1000 (systemd: OOMScoreAdjust=-1000) and the environment PG_OOM_ADJUST_FILE=/proc/self/oom_score_adj, PG_OOM_ADJUST_VALUE=0 "+
			"so backends remain the ones the OOM killer picks%s; better still, set vm.overcommit_memory = 2", adj, extra),
	}
}
