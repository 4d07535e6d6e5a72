package pasta

import (
	"reflect"
	"testing"
)

const tcpTable = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0202000A:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
   3: 0202000A:0051 0302000A:D431 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0
`

const tcp6Table = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0 100 0 0 10 0
   1: 00000000000000000000000001000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6 1 0 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:0BB9 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7 1 0 100 0 0 10 0
`

const udpTable = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  1: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 8 2 0 0
  2: 0202000A:A000 0101A8C0:0035 01 00000000:00000000 00:00000000 00000000     0        0 9 2 0 0
  3: 0202000A:A001 0101A8C0:0035 07 00000000:00000000 00:00000000 00000000     0        0 9 2 0 0
`

// BoundPorts finds the listening sockets a client outside can reach:
// loopback ones and connections are not.
func TestBoundPorts(t *testing.T) {
	got := map[uint16]bool{}
	BoundPorts([]byte(tcpTable), false, false, got)
	BoundPorts([]byte(tcp6Table), false, false, got)
	if want := map[uint16]bool{8080: true, 80: true, 443: true}; !reflect.DeepEqual(got, want) {
		t.Errorf("tcp: %v, want %v", got, want)
	}
	got = map[uint16]bool{}
	BoundPorts([]byte(udpTable), true, false, got)
	if want := map[uint16]bool{53: true}; !reflect.DeepEqual(got, want) {
		t.Errorf("udp: %v, want %v", got, want)
	}
}

// With --host-lo-to-ns-lo the loopback ones count too (127.0.0.1:22,
// [::1]:3000, the mapped 127.0.0.1:3001); connections still do not.
func TestBoundPortsLoopback(t *testing.T) {
	got := map[uint16]bool{}
	BoundPorts([]byte(tcpTable), false, true, got)
	BoundPorts([]byte(tcp6Table), false, true, got)
	if want := map[uint16]bool{8080: true, 22: true, 80: true, 443: true, 3000: true, 3001: true}; !reflect.DeepEqual(got, want) {
		t.Errorf("tcp: %v, want %v", got, want)
	}
}

// FuzzBoundPorts: any table is read without a panic, and only ports 1-65535
// come out.
func FuzzBoundPorts(f *testing.F) {
	f.Add([]byte(tcpTable), false)
	f.Add([]byte(tcp6Table), false)
	f.Add([]byte(udpTable), true)
	f.Add([]byte("h\n 0: :: 0A\n"), false)
	f.Fuzz(func(t *testing.T, table []byte, udp bool) {
		ports := map[uint16]bool{}
		BoundPorts(table, udp, false, ports)
		BoundPorts(table, udp, true, ports)
		if ports[0] {
			t.Fatal("port 0 reported bound")
		}
	})
}
