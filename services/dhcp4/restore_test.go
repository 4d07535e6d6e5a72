package dhcp4

import (
	"testing"
)

// What Saved gives, restored into a new server, gives every client its
// address again whatever order they come back in; static bindings stay
// static; a lease that clashes is refused and changes nothing.
func TestSavedRestoredGivesTheSameAddresses(t *testing.T) {
	s, _ := newTestServer(t, nil)
	a1 := lease(t, s, mac(1))
	a2 := lease(t, s, mac(2))
	saved := s.Saved()
	if len(saved) != 2 {
		t.Fatalf("saved %+v", saved)
	}
	fresh, _ := newTestServer(t, nil)
	if err := fresh.Restore(saved, false); err != nil {
		t.Fatal(err)
	}
	if len(fresh.Saved()) != 0 {
		t.Fatal("a check-only restore changed the table")
	}
	if err := fresh.Restore(saved, true); err != nil {
		t.Fatal(err)
	}
	if got := lease(t, fresh, mac(2)); got != a2 {
		t.Errorf("client 2 got %v after the restore, had %v", got, a2)
	}
	if got := lease(t, fresh, mac(1)); got != a1 {
		t.Errorf("client 1 got %v after the restore, had %v", got, a1)
	}
	clash := []Lease{{MAC: mac(9).String(), Addr: a1}}
	if err := fresh.Restore(clash, true); err == nil {
		t.Error("a clashing lease was restored")
	}
	if got := lease(t, fresh, mac(1)); got != a1 {
		t.Errorf("client 1 got %v after a refused restore, had %v", got, a1)
	}
}
