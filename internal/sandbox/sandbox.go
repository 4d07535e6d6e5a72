// Package sandbox confines slipway's engine, the process that reads guest
// and API input: a launcher starts it (Command) re-executing this binary
// in new user, mount, IPC, UTS and PID namespaces, and the engine then
// locks itself in (Enter): an empty read-only root, no capabilities,
// no_new_privs, not dumpable, no core dumps, a hard limit on descriptors,
// Landlock where the kernel has it, and a seccomp allow-list that kills
// the process on any other system call. What the engine needs from the
// host after that comes from the launcher (internal/broker).
package sandbox

import "strings"

// Layer is one layer of confinement and whether it holds.
type Layer struct {
	Name   string
	Active bool
	// Why says what the layer is (active) or why it is missing.
	Why string
}

// Report lists the layers Enter put in place, and those it could not.
type Report []Layer

func (r *Report) add(name string, err error, what string) {
	if err != nil {
		*r = append(*r, Layer{Name: name, Why: err.Error()})
		return
	}
	*r = append(*r, Layer{Name: name, Active: true, Why: what})
}

// Active reports whether every layer holds.
func (r Report) Active() bool {
	for _, l := range r {
		if !l.Active {
			return false
		}
	}
	return true
}

// String is the one line the engine logs at start: the layers that hold,
// then each missing one with its reason.
func (r Report) String() string {
	var on, off []string
	for _, l := range r {
		if l.Active {
			on = append(on, l.Name+" ("+l.Why+")")
		} else {
			off = append(off, l.Name+": "+l.Why)
		}
	}
	s := "active: " + strings.Join(on, ", ")
	if len(off) > 0 {
		s += "; MISSING: " + strings.Join(off, "; ")
	}
	return s
}
