package pool

import (
	"container/list"
	"slices"
)

// StatementSet is the set of proxy-named prepared statements that exist on
// one backend, in least-recently-used order, bounded by
// pool.max_prepared_statements. The proxy session owning the backend uses
// it; the caller serialises access.
//
// A statement is pending from its Parse until the server confirms it: a
// Parse skipped because an earlier message of its batch failed never
// creates it. The caller tags pending statements with the batch (the
// messages up to a Sync) they were parsed in.
type StatementSet struct {
	byName map[string]*list.Element
	order  list.List // front: most recently used; values are *statement
}

type statement struct {
	name    string
	pending uint64 // the batch of an unconfirmed Parse; 0 once confirmed
	// sessionBound: parsed while the backend held a client's temporary
	// tables (or other session objects), which its text may name.
	sessionBound bool
	// shape fingerprints the rows it returns, as a Describe told the
	// proxy (0: not known).
	shape uint64
}

// Has reports whether name exists on the backend and marks it used.
func (s *StatementSet) Has(name string) bool {
	ok, _ := s.Lookup(name)
	return ok
}

// Lookup reports whether name was prepared on the backend and, while its
// Parse is unconfirmed, the batch that Parse was sent in (0 once the
// server confirmed it); it marks the statement used.
func (s *StatementSet) Lookup(name string) (ok bool, pendingBatch uint64) {
	e, ok := s.byName[name]
	if !ok {
		return false, 0
	}
	s.order.MoveToFront(e)
	return true, e.Value.(*statement).pending
}

// Add records name as parsed in batch (pending until Confirm; 0 for
// confirmed at once). When the set then holds more than max statements it
// returns the least recently used ones over the limit (usually one; more
// after max was lowered), which the caller must close on the server.
// Adding a name already present makes its Parse pending again.
func (s *StatementSet) Add(name string, max int, batch uint64) (evicted []string) {
	if s.byName == nil {
		s.byName = make(map[string]*list.Element)
	}
	if e, ok := s.byName[name]; ok {
		s.order.MoveToFront(e)
		st := e.Value.(*statement)
		st.pending, st.shape = batch, 0
	} else {
		s.byName[name] = s.order.PushFront(&statement{name: name, pending: batch})
	}
	for max > 0 && len(s.byName) > max {
		last := s.order.Back()
		s.order.Remove(last)
		n := last.Value.(*statement).name
		delete(s.byName, n)
		evicted = append(evicted, n)
	}
	return evicted
}

// MarkSessionBound records that name was parsed while the backend held a
// client's session objects: its parameter and result types may come from
// that client's temporary table, shadowing a table of the same name, so
// no other client may use it (TakeSessionBound).
func (s *StatementSet) MarkSessionBound(name string) {
	if e, ok := s.byName[name]; ok {
		e.Value.(*statement).sessionBound = true
	}
}

// TakeSessionBound forgets the statements MarkSessionBound marked and
// returns their names, for the caller to close on the server.
func (s *StatementSet) TakeSessionBound() []string {
	var names []string
	for e := s.order.Front(); e != nil; {
		next := e.Next()
		if st := e.Value.(*statement); st.sessionBound {
			names = append(names, st.name)
			s.order.Remove(e)
			delete(s.byName, st.name)
		}
		e = next
	}
	return names
}

// SetShape records the shape of the rows name returns (a fingerprint the
// caller defines), as a Describe of it told.
func (s *StatementSet) SetShape(name string, shape uint64) {
	if e, ok := s.byName[name]; ok {
		e.Value.(*statement).shape = shape
	}
}

// Shape returns what SetShape recorded for name, 0 when nothing was.
func (s *StatementSet) Shape(name string) uint64 {
	if e, ok := s.byName[name]; ok {
		return e.Value.(*statement).shape
	}
	return 0
}

// Confirm records that the server created name (its ParseComplete).
func (s *StatementSet) Confirm(name string) {
	if e, ok := s.byName[name]; ok {
		e.Value.(*statement).pending = 0
	}
}

// Remove forgets name (closed).
func (s *StatementSet) Remove(name string) {
	if e, ok := s.byName[name]; ok {
		s.order.Remove(e)
		delete(s.byName, name)
	}
}

// RemoveFailed forgets name after its Parse from batch failed or was
// skipped, unless it was parsed again in a later batch since (or
// confirmed).
func (s *StatementSet) RemoveFailed(name string, batch uint64) {
	if e, ok := s.byName[name]; ok && e.Value.(*statement).pending == batch {
		s.order.Remove(e)
		delete(s.byName, name)
	}
}

// Clear forgets everything (DISCARD ALL, DEALLOCATE ALL).
func (s *StatementSet) Clear() {
	s.byName = nil
	s.order.Init()
}

// ClearExcept forgets everything but the statements named in keep (those
// parsed after a DISCARD ALL the server has just answered).
func (s *StatementSet) ClearExcept(keep []string) {
	if len(keep) == 0 {
		s.Clear()
		return
	}
	for name, e := range s.byName {
		if !slices.Contains(keep, name) {
			s.order.Remove(e)
			delete(s.byName, name)
		}
	}
}

// Len is the number of statements on the backend.
func (s *StatementSet) Len() int { return len(s.byName) }
