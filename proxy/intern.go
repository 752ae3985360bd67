package proxy

import (
	"slices"
	"strings"
	"sync"
)

// paramSets shares identical client parameter sets (the tracked settings a
// session wants on its backend) among sessions: most clients of a pool send
// the same handful of values, and a map per idle client is a few hundred
// bytes of the memory an idle client costs. Shared sets are read-only; a
// session copies its set before the first change (copy on write).
type paramSets struct {
	mu     sync.Mutex
	sets   map[string]sharedParams
	lastID uint64
}

// sharedParams is a shared set and its number: equal numbers mean equal
// sets (pool.Backend.SettingsMatched). Numbers are never reused, even
// after the table starts over.
type sharedParams struct {
	m  map[string]string
	id uint64
}

// maxParamSets bounds the table against clients sending endless variants
// (application names with counters, say): past it, it starts over.
const maxParamSets = 4096

func newParamSets() *paramSets { return &paramSets{sets: make(map[string]sharedParams)} }

// share returns the shared set equal to m, adopting m if there is none,
// and the set's number (never 0).
func (p *paramSets) share(m map[string]string) (map[string]string, uint64) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var sb strings.Builder
	for _, k := range keys {
		sb.WriteString(k)
		sb.WriteByte(0)
		sb.WriteString(m[k])
		sb.WriteByte(0)
	}
	key := sb.String()
	p.mu.Lock()
	defer p.mu.Unlock()
	if s, ok := p.sets[key]; ok {
		return s.m, s.id
	}
	if len(p.sets) >= maxParamSets {
		clear(p.sets)
	}
	p.lastID++
	p.sets[key] = sharedParams{m: m, id: p.lastID}
	return m, p.lastID
}

func (p *paramSets) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sets)
}
