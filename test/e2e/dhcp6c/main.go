// Command dhcp6c is the DHCPv6 client of the QEMU guest in slipway's
// end-to-end tests (busybox has none): it asks for one address (IA_NA,
// with rapid commit) and the DNS servers on an interface, and prints them
// as "@dhcp6=ADDR" and "@dhcp6dns=ADDR" lines for the test to read.
package main

import (
	"crypto/rand"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"
)

const (
	msgSolicit = 1
	msgReply   = 7

	optClientID    = 1
	optIANA        = 3
	optIAAddr      = 5
	optORO         = 6
	optRapidCommit = 14
	optDNS         = 23
)

func main() {
	ifname := flag.String("i", "eth0", "interface")
	flag.Parse()
	if err := run(*ifname); err != nil {
		fmt.Fprintln(os.Stderr, "dhcp6c:", err)
		os.Exit(1)
	}
}

func option(code uint16, data []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, code)
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

func run(ifname string) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	// DUID-LL (type 3, hardware type 1, the MAC).
	duid := append([]byte{0, 3, 0, 1}, ifi.HardwareAddr...)
	var txid [3]byte
	rand.Read(txid[:])
	msg := append([]byte{msgSolicit}, txid[:]...)
	msg = append(msg, option(optClientID, duid)...)
	msg = append(msg, option(optIANA, make([]byte, 12))...) // IAID 0, T1/T2 0
	msg = append(msg, option(optRapidCommit, nil)...)
	msg = append(msg, option(optORO, []byte{0, optDNS})...)

	c, err := net.ListenUDP("udp6", &net.UDPAddr{Port: 546, Zone: ifname})
	if err != nil {
		return err
	}
	defer c.Close()
	dst := &net.UDPAddr{IP: net.ParseIP("ff02::1:2"), Port: 547, Zone: ifname}
	buf := make([]byte, 1500)
	for attempt := 0; attempt < 10; attempt++ {
		if _, err := c.WriteToUDP(msg, dst); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			continue // resend
		}
		r := buf[:n]
		if len(r) < 4 || r[0] != msgReply || [3]byte(r[1:4]) != txid {
			continue
		}
		return printReply(r[4:])
	}
	return fmt.Errorf("no reply on %s", ifname)
}

func printReply(opts []byte) error {
	found := false
	for len(opts) >= 4 {
		code, size := binary.BigEndian.Uint16(opts), int(binary.BigEndian.Uint16(opts[2:]))
		if 4+size > len(opts) {
			return fmt.Errorf("truncated option %d", code)
		}
		data := opts[4 : 4+size]
		switch code {
		case optIANA:
			if len(data) < 12 {
				break
			}
			sub := data[12:]
			for len(sub) >= 4 {
				sc, ss := binary.BigEndian.Uint16(sub), int(binary.BigEndian.Uint16(sub[2:]))
				if 4+ss > len(sub) {
					break
				}
				if sc == optIAAddr && ss >= 24 {
					fmt.Printf("@dhcp6=%s\n", netip.AddrFrom16([16]byte(sub[4:20])))
					found = true
				}
				sub = sub[4+ss:]
			}
		case optDNS:
			for i := 0; i+16 <= len(data); i += 16 {
				fmt.Printf("@dhcp6dns=%s\n", netip.AddrFrom16([16]byte(data[i:i+16])))
			}
		}
		opts = opts[4+size:]
	}
	if !found {
		return fmt.Errorf("the reply has no address")
	}
	return nil
}
