package pool

import "container/list"

// StatementSet is the set of proxy-named prepared statements that exist on
// one backend, in least-recently-used order, bounded by
// pool.max_prepared_statements. The proxy session owning the backend uses
// it; the caller serialises access.
type StatementSet struct {
	byName map[string]*list.Element
	order  list.List // front: most recently used
}

// Has reports whether name exists on the backend and marks it used.
func (s *StatementSet) Has(name string) bool {
	e, ok := s.byName[name]
	if ok {
		s.order.MoveToFront(e)
	}
	return ok
}

// Add records name; when the set then holds more than max statements it
// returns the least recently used one, which the caller must close on the
// server.
func (s *StatementSet) Add(name string, max int) (evicted string) {
	if s.byName == nil {
		s.byName = make(map[string]*list.Element)
	}
	if e, ok := s.byName[name]; ok {
		s.order.MoveToFront(e)
		return ""
	}
	s.byName[name] = s.order.PushFront(name)
	if max > 0 && len(s.byName) > max {
		last := s.order.Back()
		s.order.Remove(last)
		evicted = last.Value.(string)
		delete(s.byName, evicted)
	}
	return evicted
}

// Remove forgets name (closed, or its Parse failed).
func (s *StatementSet) Remove(name string) {
	if e, ok := s.byName[name]; ok {
		s.order.Remove(e)
		delete(s.byName, name)
	}
}

// Clear forgets everything (DISCARD ALL, DEALLOCATE ALL).
func (s *StatementSet) Clear() {
	s.byName = nil
	s.order.Init()
}

// Len is the number of statements on the backend.
func (s *StatementSet) Len() int { return len(s.byName) }
