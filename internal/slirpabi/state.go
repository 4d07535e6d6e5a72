package slirpabi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
)

// StateVersion is the version of libslirp's migration stream that
// slirp_state_save writes (QEMU asserts it is 4).
const StateVersion = 4

// BootpClients is the size of libslirp's DHCP table: entry i is the
// address vdhcp_start+i.
const BootpClients = 16

// maxSbuf bounds a socket buffer's length read from a stream: libslirp's
// own buffers are far smaller, and a larger claim is a corrupt stream.
const maxSbuf = 4 << 20

// tcpcbLen is the size of a migrated TCP control block (libslirp's
// vmstate_slirp_tcp): 16 16-bit, 20 32-bit and 7 8-bit fields.
const tcpcbLen = 119

// ErrBadState is a migration stream slipway cannot load.
var ErrBadState = errors.New("bad slirp state stream")

// BootpClient is one entry of libslirp's DHCP table.
type BootpClient struct {
	Allocated bool
	MAC       [6]byte
}

// State is what a libslirp migration stream carries that slipway keeps:
// the IP ID counter and the DHCP table. Guest-forward sockets (the
// records before the table) are counted and skipped: slipway has none to
// restore them into.
type State struct {
	IPID    uint16
	Clients [BootpClients]BootpClient
	// Sockets is how many socket records a loaded stream held.
	Sockets int
}

// WriteState writes st as libslirp 4.7's slirp_state_save does with no
// guest-forward sockets: a 0 byte, the IP ID, the DHCP table (131 bytes).
func WriteState(w io.Writer, st State) error {
	b := make([]byte, 0, 3+BootpClients*8)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint16(b, st.IPID)
	for _, c := range st.Clients {
		var a uint16
		if c.Allocated {
			a = 1
		}
		b = binary.BigEndian.AppendUint16(b, a)
		b = append(b, c.MAC[:]...)
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("writing slirp state: %w", err)
	}
	return nil
}

// ReadState reads a stream of the given version (1-4) as libslirp writes
// it, consuming exactly its bytes: a stream is one section of the host's
// migration stream, followed by others.
func ReadState(r io.Reader, version int) (State, error) {
	var st State
	if version < 1 || version > StateVersion {
		return st, fmt.Errorf("%w: version %d (want 1-%d)", ErrBadState, version, StateVersion)
	}
	rd := reader{r: r}
	for {
		tag := rd.u8()
		if rd.err != nil || tag == 0 {
			break
		}
		if st.Sockets++; st.Sockets > 1024 {
			return st, fmt.Errorf("%w: more than 1024 socket records", ErrBadState)
		}
		if err := skipSocket(&rd, version); err != nil {
			return st, err
		}
	}
	if version >= 2 {
		st.IPID = rd.u16()
	}
	if version >= 3 {
		for i := range st.Clients {
			st.Clients[i].Allocated = rd.u16() != 0
			rd.read(st.Clients[i].MAC[:])
		}
	}
	if rd.err != nil {
		return st, fmt.Errorf("%w: %v", ErrBadState, rd.err)
	}
	return st, nil
}

// skipSocket reads past one guest-forward socket record (libslirp's
// vmstate_slirp_socket), checking what it can.
func skipSocket(rd *reader, version int) error {
	rd.u32() // so_urgc
	if version < 4 {
		rd.skip(4 + 4 + 2 + 2) // faddr, laddr, fport, lport
	} else {
		for range 2 { // fhost, lhost
			switch fam := rd.u16(); fam {
			case 2:
				rd.skip(4 + 2)
			case 10, 23, 28:
				// IPv6 addresses carry no fields in 4.7's stream.
			default:
				if rd.err == nil {
					return fmt.Errorf("%w: socket address family %#x", ErrBadState, fam)
				}
			}
		}
	}
	rd.skip(1 + 1 + 1 + 4) // iptos, emu, type, state
	for range 2 {          // so_rcv, so_snd
		rd.u32() // sb_cc
		n := rd.u32()
		woff, roff := rd.u32(), rd.u32()
		if rd.err != nil {
			break
		}
		if n > maxSbuf || woff >= n || roff >= n {
			return fmt.Errorf("%w: socket buffer of %d bytes, offsets %d/%d", ErrBadState, n, roff, woff)
		}
		rd.skip(int(n))
	}
	rd.skip(tcpcbLen)
	if rd.err != nil {
		return fmt.Errorf("%w: socket record: %v", ErrBadState, rd.err)
	}
	return nil
}

type reader struct {
	r   io.Reader
	err error
	buf [8]byte
}

func (rd *reader) read(b []byte) {
	if rd.err != nil {
		clear(b)
		return
	}
	if _, err := io.ReadFull(rd.r, b); err != nil {
		rd.err = err
		clear(b)
	}
}

func (rd *reader) u8() byte    { rd.read(rd.buf[:1]); return rd.buf[0] }
func (rd *reader) u16() uint16 { rd.read(rd.buf[:2]); return binary.BigEndian.Uint16(rd.buf[:]) }
func (rd *reader) u32() uint32 { rd.read(rd.buf[:4]); return binary.BigEndian.Uint32(rd.buf[:]) }

func (rd *reader) skip(n int) {
	if rd.err != nil || n == 0 {
		return
	}
	if _, err := io.CopyN(io.Discard, rd.r, int64(n)); err != nil {
		rd.err = err
	}
}

// SaveState writes the instance's migration stream (slirp_state_save):
// the leases of the first BootpClients addresses from DHCPStart, which is
// the range libslirp's table covers.
func (i *Instance) SaveState(w io.Writer) error {
	var st State
	start := i.cfg.DHCPStart
	for _, l := range i.net.Leases() {
		k, ok := offset(start, l.Addr)
		if !ok || k >= BootpClients {
			continue
		}
		mac, err := net.ParseMAC(l.MAC)
		if err != nil || len(mac) != 6 {
			continue
		}
		st.Clients[k] = BootpClient{Allocated: true, MAC: [6]byte(mac)}
	}
	return WriteState(w, st)
}

// LoadState reads a migration stream (slirp_state_load) and binds each
// DHCP entry's MAC to its address, so the guest keeps its lease.
func (i *Instance) LoadState(version int, r io.Reader) error {
	st, err := ReadState(r, version)
	if err != nil {
		return err
	}
	if st.Sockets > 0 {
		i.log.Warn("migration stream holds guest-forward connections; they are not restored", "sockets", st.Sockets)
	}
	for k, c := range st.Clients {
		if !c.Allocated {
			continue
		}
		addr := addrAt(i.cfg.DHCPStart, k)
		if err := i.net.Reserve(net.HardwareAddr(c.MAC[:]), addr); err != nil {
			i.log.Warn("migrated DHCP lease not restored", "addr", addr, "err", err)
		}
	}
	return nil
}

// StateErrno is the negative errno slirp_state_load returns for err.
func StateErrno(err error) int {
	if err == nil {
		return 0
	}
	return -int(syscall.EINVAL)
}

func offset(start, a netip.Addr) (int, bool) {
	if !start.Is4() || !a.Is4() {
		return 0, false
	}
	s, v := start.As4(), a.As4()
	d := int64(binary.BigEndian.Uint32(v[:])) - int64(binary.BigEndian.Uint32(s[:]))
	return int(d), d >= 0
}

func addrAt(start netip.Addr, k int) netip.Addr {
	s := start.As4()
	return netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, binary.BigEndian.Uint32(s[:])+uint32(k))))
}
