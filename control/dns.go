package control

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/slipway-net/slipway/services/dns"
)

// DNS records slipway's DNS answers itself, listed and added at run time
// (a name for a new guest, as lima adds lima-NAME.internal).

func (s *Server) listDNSRecords(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, dnsRecords(s.n.DNS()))
}

func (s *Server) addDNSRecord(w http.ResponseWriter, r *http.Request) {
	var req DNSRecord
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Name == "" || len(req.IPs) == 0 {
		writeError(w, http.StatusBadRequest, errors.New("want a name and at least one address in ips"))
		return
	}
	if len(req.IPs) > maxRecordAddrs {
		writeError(w, http.StatusBadRequest, fmt.Errorf("more than %d addresses for one name", maxRecordAddrs))
		return
	}
	f := s.n.DNS()
	if err := s.n.AddDNSRecord(req.Name, req.IPs...); err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, dns.ErrTooManyNames) {
			status = http.StatusTooManyRequests
		}
		writeError(w, status, err)
		return
	}
	key := strings.TrimSuffix(strings.ToLower(req.Name), ".")
	for _, rec := range dnsRecords(f) {
		if rec.Name == key {
			writeJSON(w, http.StatusCreated, rec)
			return
		}
	}
	writeJSON(w, http.StatusCreated, req)
}

// maxRecordAddrs bounds the addresses one request gives a name.
const maxRecordAddrs = 16

// dnsRecords lists the forwarder's exact names, sorted by name.
func dnsRecords(f *dns.Forwarder) []DNSRecord {
	out := []DNSRecord{}
	for name, ips := range f.Records() {
		out = append(out, DNSRecord{Name: strings.TrimSuffix(name, "."), IPs: ips})
	}
	slices.SortFunc(out, func(a, b DNSRecord) int { return strings.Compare(a.Name, b.Name) })
	return out
}
