// Command peerecho is the guest-side server of the published-port tests:
// it tells every TCP client and every UDP datagram's sender the address it
// came from ("peer=IP:PORT"), and logs the same line, so a test sees which
// source address the guest got.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
)

// Listening on both families lets the IPv6 tests reach the same server;
// IPv4 peers still print as a.b.c.d:port.
func main() {
	tcpAddr := flag.String("tcp", "", "TCP address to serve, e.g. :80")
	udpAddr := flag.String("udp", "", "UDP address to serve, e.g. :5000")
	httpAddr := flag.String("http", "", "HTTP address to serve a small page on, e.g. :8000")
	flag.Parse()
	log.SetOutput(os.Stdout)
	log.SetFlags(0)
	errs := make(chan error, 2)
	if *tcpAddr != "" {
		l, err := net.Listen("tcp", *tcpAddr)
		if err != nil {
			log.Fatal(err)
		}
		go func() { errs <- serveTCP(l) }()
	}
	if *udpAddr != "" {
		c, err := net.ListenPacket("udp", *udpAddr)
		if err != nil {
			log.Fatal(err)
		}
		go func() { errs <- serveUDP(c) }()
	}
	if *httpAddr != "" {
		// Go listens with the system's full backlog (somaxconn), unlike
		// busybox httpd (9), so a load test measures the network, not
		// a server that cannot accept fast enough.
		page := []byte(strings.Repeat("slipway\n", 128))
		srv := &http.Server{Addr: *httpAddr, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write(page)
		})}
		go func() { errs <- srv.ListenAndServe() }()
	}
	log.Println("peerecho ready")
	log.Fatal(<-errs)
}

func serveTCP(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		line := "peer=" + c.RemoteAddr().String()
		log.Println("tcp", line)
		fmt.Fprintln(c, line)
		c.Close()
	}
}

func serveUDP(c net.PacketConn) error {
	buf := make([]byte, 65535)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		line := fmt.Sprintf("peer=%s %s", from, buf[:n])
		log.Println("udp", line)
		c.WriteTo([]byte(line), from)
	}
}
