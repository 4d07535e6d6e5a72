package dhcp6

import (
	"encoding/hex"
	"testing"
)

// What Saved gives, restored into a new server, gives every IA_NA its
// address again whatever order the clients come back in; a lease that
// clashes is refused and changes nothing.
func TestSavedRestoredGivesTheSameAddresses(t *testing.T) {
	s, _ := newTestServer(t, nil)
	a1 := lease(t, s, duidLL(1), 1)
	a2 := lease(t, s, duidLL(2), 1)
	saved := s.Saved()
	if len(saved) != 2 {
		t.Fatalf("saved %+v", saved)
	}
	fresh, _ := newTestServer(t, nil)
	if err := fresh.Restore(saved, true); err != nil {
		t.Fatal(err)
	}
	if got := lease(t, fresh, duidLL(2), 1); got != a2 {
		t.Errorf("client 2 got %v after the restore, had %v", got, a2)
	}
	if got := lease(t, fresh, duidLL(1), 1); got != a1 {
		t.Errorf("client 1 got %v after the restore, had %v", got, a1)
	}
	// Another DUID on a1: refused, and a1 stays client 1's.
	clash := []Lease{{DUID: hex.EncodeToString(duidLL(9)), IAID: 1, Addr: a1, Expires: saved[0].Expires}}
	if err := fresh.Restore(clash, true); err == nil {
		t.Error("a clashing lease was restored")
	}
	if got := lease(t, fresh, duidLL(1), 1); got != a1 {
		t.Errorf("client 1 got %v after a refused restore, had %v", got, a1)
	}
}
