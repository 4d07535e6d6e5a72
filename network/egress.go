package network

import (
	"fmt"
	"slices"
	"sync"

	"github.com/slipway-net/slipway/config"
)

// EgressRule is one of the network's egress rules as the API shows it:
// an ID that stays with it while it exists, and the rule.
type EgressRule struct {
	ID     uint64 `json:"id"`
	Rule   string `json:"rule"`
	Action string `json:"action"`
	// Dest is the rule's CIDR[:PORTS].
	Dest string `json:"dest"`
}

// egressRules keeps the IDs of the policy's egress rules. Writers take
// mu and publish a new list to the policy (which readers see whole, see
// policy.Rules); the two slices are replaced, never changed in place.
type egressRules struct {
	mu     sync.Mutex
	ids    []uint64
	rules  []config.EgressRule
	nextID uint64
}

// setEgress replaces every rule with rules, giving them new IDs.
func (n *Network) setEgress(rules []config.EgressRule) []EgressRule {
	e := &n.egress
	e.mu.Lock()
	defer e.mu.Unlock()
	ids := make([]uint64, len(rules))
	for i := range ids {
		e.nextID++
		ids[i] = e.nextID
	}
	n.publishEgress(ids, slices.Clone(rules))
	return n.egressInfos()
}

// publishEgress installs a new list; e.mu is held.
func (n *Network) publishEgress(ids []uint64, rules []config.EgressRule) {
	n.egress.ids, n.egress.rules = ids, rules
	n.rules.SetEgress(rules)
}

func (n *Network) egressInfos() []EgressRule {
	e := &n.egress
	out := make([]EgressRule, len(e.rules))
	for i, r := range e.rules {
		out[i] = EgressRule{ID: e.ids[i], Rule: r.String(), Action: r.Action, Dest: r.Dest()}
	}
	return out
}

// EgressRules lists the egress rules in the order they are tried.
func (n *Network) EgressRules() []EgressRule {
	n.egress.mu.Lock()
	defer n.egress.mu.Unlock()
	return n.egressInfos()
}

// SetEgressRules replaces every egress rule; flows opened from now on
// are decided by the new list, flows already open stay.
func (n *Network) SetEgressRules(rules []config.EgressRule) ([]EgressRule, error) {
	if len(rules) > config.MaxEgressRules {
		return nil, &config.FieldError{Flag: "egress", Value: fmt.Sprintf("%d rules", len(rules)), Reason: fmt.Sprintf("more than %d", config.MaxEgressRules)}
	}
	return n.setEgress(rules), nil
}

// AddEgressRule inserts r before the rule at index (at the end when index
// is negative or past it) and returns it with its ID.
func (n *Network) AddEgressRule(r config.EgressRule, index int) (EgressRule, error) {
	e := &n.egress
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.rules) >= config.MaxEgressRules {
		return EgressRule{}, egressError{fmt.Sprintf("egress rule limit reached (%d)", config.MaxEgressRules), ErrLimit}
	}
	if index < 0 || index > len(e.rules) {
		index = len(e.rules)
	}
	e.nextID++
	n.publishEgress(slices.Insert(slices.Clone(e.ids), index, e.nextID), slices.Insert(slices.Clone(e.rules), index, r))
	return n.egressInfos()[index], nil
}

// RemoveEgressRule removes rule id and returns it.
func (n *Network) RemoveEgressRule(id uint64) (EgressRule, error) {
	e := &n.egress
	e.mu.Lock()
	defer e.mu.Unlock()
	i := slices.Index(e.ids, id)
	if i < 0 {
		return EgressRule{}, egressError{fmt.Sprintf("no egress rule %d", id), ErrNotFound}
	}
	gone := n.egressInfos()[i]
	n.publishEgress(slices.Delete(slices.Clone(e.ids), i, i+1), slices.Delete(slices.Clone(e.rules), i, i+1))
	return gone, nil
}

// egressError is an error of the rule calls that is, to errors.Is, one of
// the network's errors (ErrNotFound, ErrLimit) without their wording,
// which speaks of forwards.
type egressError struct {
	msg  string
	kind error
}

func (e egressError) Error() string        { return e.msg }
func (e egressError) Is(target error) bool { return target == e.kind }
