package dns

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// ReadResolvConf reads the host's resolver configuration (resolv.conf(5)):
// the nameservers on port 53 in file order (IPv6 with a zone such as
// fe80::1%eth0 included), and the names of the last search line and of the
// last domain line. Lines it cannot use, such as a nameserver that is not
// an IP address, are skipped as the C library skips them; 0.0.0.0 and ::
// become the loopback address they reach. A file without
// nameservers gives none; choosing a fallback is the caller's business.
func ReadResolvConf(path string) (servers []netip.AddrPort, search []string, domain string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, "", fmt.Errorf("dns: read resolver configuration: %w", err)
	}
	servers, search, domain = parseResolvConf(b)
	return servers, search, domain, nil
}

// ParseResolvConf is ReadResolvConf on the file's contents, read by
// someone else (a sandboxed process may open no file).
func ParseResolvConf(b []byte) (servers []netip.AddrPort, search []string, domain string) {
	return parseResolvConf(b)
}

func parseResolvConf(b []byte) (servers []netip.AddrPort, search []string, domain string) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	// A line longer than the buffer ends the scan; resolv.conf lines are
	// short, and what was read so far is still returned.
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// Everything from a field starting with '#' or ';' is a comment.
		for i, fld := range fields {
			if fld[0] == '#' || fld[0] == ';' {
				fields = fields[:i]
				break
			}
		}
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "nameserver":
			a, err := netip.ParseAddr(fields[1])
			if err != nil {
				continue
			}
			// Connecting to the unspecified address reaches this host,
			// which is what such a line means; say so explicitly.
			if a == netip.IPv4Unspecified() {
				a = netip.AddrFrom4([4]byte{127, 0, 0, 1})
			} else if a == netip.IPv6Unspecified() {
				a = netip.IPv6Loopback()
			}
			servers = append(servers, netip.AddrPortFrom(a, 53))
		case "search":
			search = append([]string(nil), fields[1:]...)
		case "domain":
			domain = fields[1]
		}
	}
	return servers, search, domain
}
