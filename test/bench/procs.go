package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// registry tracks every process the benchmark starts, so that all of them
// are stopped on a normal exit, an error, a panic or a signal. Each child
// runs in a process group of its own (a Ctrl-C on the terminal reaches only
// the benchmark, which then stops the children in order) and gets SIGKILL
// from the kernel if the benchmark itself dies without cleaning up.
type registry struct {
	mu     sync.Mutex
	live   map[*child]struct{}
	closed bool
}

func newRegistry() *registry { return &registry{live: map[*child]struct{}{}} }

// child is one started process.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been reaped
	err  error         // Wait's result, valid after done
}

var errShuttingDown = errors.New("bench: shutting down")

// spawn starts cmd as a group leader and reaps it in the background.
func (r *registry) spawn(name string, cmd *exec.Cmd) (*child, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, errShuttingDown
	}
	if err := cmd.Start(); err != nil {
		r.mu.Unlock()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	r.live[c] = struct{}{}
	r.mu.Unlock()
	go func() {
		c.err = cmd.Wait()
		r.mu.Lock()
		delete(r.live, c)
		r.mu.Unlock()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the child's process group while the child has not
// been reaped (afterwards its pid, and so the group id, may be reused).
func (c *child) signal(sig syscall.Signal) {
	if c.exited() {
		return
	}
	_ = syscall.Kill(-c.pid(), sig)
}

// stop asks the child to exit with SIGTERM and kills it after grace.
func (c *child) stop(grace time.Duration) {
	c.signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return
	case <-time.After(grace):
	}
	c.signal(syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		fmt.Fprintf(os.Stderr, "bench: %s (pid %d) survived SIGKILL for 10s\n", c.name, c.pid())
	}
}

// wait waits for the child to exit, stopping it when ctx ends first.
func (c *child) wait(ctx context.Context) error {
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		c.stop(2 * time.Second)
		return ctx.Err()
	}
}

// stopAll stops every live child and refuses new ones.
func (r *registry) stopAll() {
	r.mu.Lock()
	r.closed = true
	var all []*child
	for c := range r.live {
		all = append(all, c)
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.stop(3 * time.Second)
		}()
	}
	wg.Wait()
}

// procStat is what the benchmark reads about a proxy process.
type procStat struct {
	CPUTicks int64 // utime + stime, all threads
	RSSKiB   int64 // VmRSS
	HWMKiB   int64 // VmHWM: peak RSS since the process started
	CtxSw    int64 // voluntary + involuntary context switches of all live threads
}

// clockTicks is USER_HZ, which is 100 on every Linux architecture Go
// supports (sysconf(_SC_CLK_TCK) is not reachable without cgo).
const clockTicks = 100

func readProcStat(pid int) (procStat, error) {
	var s procStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'. Field 3 (state) is rest[0]; utime is 14, stime 15.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	rest := strings.Fields(string(b[i+1:]))
	if len(rest) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseInt(rest[11], 10, 64)
	st, err2 := strconv.ParseInt(rest[12], 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	s.CPUTicks = ut + st
	st2, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(st2), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			s.RSSKiB = n
		case "VmHWM":
			s.HWMKiB = n
		}
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread exited meanwhile
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				s.CtxSw += n
			}
		}
	}
	return s, nil
}
