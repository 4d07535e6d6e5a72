package counters

import (
	"reflect"
	"sync/atomic"
	"testing"
)

type inner struct {
	Deep atomic.Uint64 `counter:"deep"`
}

type sample struct {
	Runt    atomic.Uint64     `counter:"runt"`
	Level   atomic.Int64      `counter:"level,gauge"`
	Plain   uint64            `counter:"plain"`
	Leases  int               `counter:"leases,gauge"`
	Dropped map[string]uint64 `counter:"dropped"`
	Nested  inner
	Hidden  atomic.Uint64
	name    string // not a counter
}

func TestWalkReadsEveryTaggedCounter(t *testing.T) {
	s := &sample{Plain: 3, Leases: 4, Dropped: map[string]uint64{"short": 5, "bad": 6}, name: "x"}
	s.Runt.Store(1)
	s.Level.Store(2)
	s.Nested.Deep.Store(7)
	s.Hidden.Store(8)
	want := []Value{
		{Name: "runt", Value: 1},
		{Name: "level", Value: 2, Gauge: true},
		{Name: "plain", Value: 3},
		{Name: "leases", Value: 4, Gauge: true},
		{Name: "dropped", Key: "bad", Value: 6, Map: true},
		{Name: "dropped", Key: "short", Value: 5, Map: true},
		{Name: "deep", Value: 7},
	}
	if got := Walk(s); !reflect.DeepEqual(got, want) {
		t.Fatalf("Walk =\n%+v\nwant\n%+v", got, want)
	}
	if got := Names(s); !reflect.DeepEqual(got, []string{"runt", "level", "plain", "leases", "dropped", "deep"}) {
		t.Fatalf("Names = %v", got)
	}
	if got := Untagged(s); !reflect.DeepEqual(got, []string{"Hidden"}) {
		t.Fatalf("Untagged = %v, want [Hidden]", got)
	}
	// A count per reason with nothing counted yet still shows.
	s.Dropped = nil
	if got := Walk(s)[4]; got != (Value{Name: "dropped", Map: true}) {
		t.Fatalf("empty map reads %+v", got)
	}
}
