package ws

import (
	"testing"

	"github.com/tidings/tidings/internal/hub"
)

// The poller library would close any connection silent for 120 s (its
// default read deadline), whatever idle_timeout says; the hub's sweep is
// what closes idle connections, so the library's deadline must be off.
func TestNoLibraryReadDeadline(t *testing.T) {
	s := New(Options{Hub: hub.New(hub.Options{})})
	if d := s.upgrader.KeepaliveTime; d != 0 {
		t.Fatalf("upgrader read deadline %v, want none", d)
	}
}
