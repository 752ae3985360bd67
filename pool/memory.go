package pool

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Memory sources: where a backend's memory is read.
const (
	memContexts = "contexts"
	memProc     = "proc"
	memOff      = "off"
)

// contextsQuery sums the memory contexts of the backend that runs it
// (PostgreSQL 14+). It reads only the backend's own contexts, so it works
// on managed databases where /proc is out of reach.
const contextsQuery = "SELECT sum(total_bytes)::int8 FROM pg_backend_memory_contexts"

// Memory returns the backend's last sampled memory in bytes and when it was
// taken (zero time: never sampled).
func (b *Backend) Memory() (int64, time.Time) {
	at := b.memAt.Load()
	if at == 0 {
		return 0, time.Time{}
	}
	return b.memBytes.Load(), time.Unix(0, at)
}

func (b *Backend) recordMemory(n int64, at time.Time) {
	b.memBytes.Store(n)
	b.memAt.Store(at.UnixNano())
}

// memoryDue reports whether an idle backend should be sampled now.
func (p *Pool) memoryDue(b *Backend, now time.Time) bool {
	p.mu.Lock()
	rc := p.opts.Recycle
	src := p.memSource
	p.mu.Unlock()
	if rc.MaxMemory <= 0 || src == memOff {
		return false
	}
	_, at := b.Memory()
	return at.IsZero() || now.Sub(at) >= rc.MemoryCheckInterval.D()
}

// memoryOverdueLocked reports whether b's memory sample is two check
// intervals old (or, never sampled, b is): with memory_check_interval
// "0s", at every release. Callers hold p.mu.
func (p *Pool) memoryOverdueLocked(b *Backend, now time.Time) bool {
	if p.opts.Recycle.MaxMemory <= 0 || p.memSource == memOff {
		return false
	}
	_, at := b.Memory()
	if at.IsZero() {
		at = b.Created
	}
	return now.Sub(at) >= 2*p.opts.Recycle.MemoryCheckInterval.D()
}

// sampleMemory measures an idle backend (outside any transaction) and
// returns its size; ok is false when no measurement could be taken, which
// never fails client traffic.
func (p *Pool) sampleMemory(b *Backend) (int64, bool) {
	p.mu.Lock()
	src := p.memSource
	timeout := p.opts.Pool.ServerConnectTimeout.D()
	p.mu.Unlock()
	now := time.Now()
	switch src {
	case memContexts:
		n, err := queryContexts(b, timeout)
		if err == nil {
			b.recordMemory(n, now)
			return n, true
		}
		var qe *QueryError
		if !errors.As(err, &qe) {
			return 0, false // the backend broke; the caller sees b.Broken
		}
		next := memOff
		if p.procAvailable(b) {
			next = memProc
		}
		p.mu.Lock()
		changed := p.memSource == memContexts
		p.memSource = next
		p.mu.Unlock()
		if changed {
			p.log.Warn("memory_source \"contexts\" unavailable: the backend role needs pg_read_all_stats (PostgreSQL 15+) or superuser (14), and PostgreSQL 14 or later",
				zap.String("error", qe.Error()), zap.String("fallback", next))
		}
		if next == memProc {
			return p.sampleMemory(b)
		}
		return 0, false
	case memProc:
		n, err := procRssAnon(b.PID)
		if err != nil {
			p.mu.Lock()
			changed := p.memSource == memProc
			p.memSource = memOff
			p.mu.Unlock()
			if changed {
				p.log.Warn("memory_source \"proc\" unavailable: PostgreSQL must run on this host; memory retirement is off for this pool", zap.Error(err))
			}
			return 0, false
		}
		b.recordMemory(n, now)
		return n, true
	}
	return 0, false
}

// procAvailable tells whether the backend's /proc entry is readable: the
// server runs on this host.
func (p *Pool) procAvailable(b *Backend) bool {
	p.mu.Lock()
	host := p.opts.Target.Host
	p.mu.Unlock()
	if !strings.HasPrefix(host, "/") && host != "localhost" {
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	_, err := procRssAnon(b.PID)
	return err == nil
}

// procRssAnon reads RssAnon (private anonymous memory) of a process.
// VmRSS would count the shared_buffers pages the backend touched, which
// retiring it doesn't give back.
func procRssAnon(pid uint32) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			f := strings.Fields(rest)
			if len(f) < 1 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no RssAnon in /proc/%d/status", pid)
}

// queryContexts runs the contexts probe on an idle backend.
func queryContexts(b *Backend, timeout time.Duration) (int64, error) {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	_ = b.Conn.SetDeadline(time.Now().Add(timeout))
	defer func() { _ = b.Conn.SetDeadline(time.Time{}) }()
	var n int64
	var perr error
	status, err := SimpleQuery(b, contextsQuery, func(row []byte) {
		n, perr = firstInt(row)
	})
	if err != nil {
		return 0, err
	}
	if status != 'I' {
		b.Broken = true
		return 0, errors.New("memory probe left a transaction open")
	}
	return n, perr
}

// firstInt decodes the first column of a text-format DataRow as an integer.
func firstInt(row []byte) (int64, error) {
	if len(row) < 6 || binary.BigEndian.Uint16(row) < 1 {
		return 0, errors.New("short DataRow")
	}
	l := int32(binary.BigEndian.Uint32(row[2:]))
	if l < 0 || int(l) > len(row)-6 {
		return 0, errors.New("NULL or malformed value")
	}
	return strconv.ParseInt(string(row[6:6+l]), 10, 64)
}
