package vhostuser

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link"
)

// loop answers the front-end's messages until the connection ends or a
// message is refused: a refused message is answered with a failure when
// the front-end waits for one, and the connection is closed (QEMU, too,
// gives up on a device after any failed request).
func (l *Link) loop() error {
	for {
		h, payload, fds, err := recvMessage(l.conn, l.msgBuf, l.oob)
		if err != nil {
			closeFDs(fds)
			return err
		}
		m, err := parseMessage(h, payload, fds)
		if err != nil {
			closeFDs(fds)
			l.fail(h)
			return err
		}
		reply, err := l.handle(m)
		if err != nil {
			l.fail(h)
			return fmt.Errorf("%s: %w", reqName(h.Request), err)
		}
		switch {
		case reply != nil:
			err = l.reply(h.Request, reply)
		case m.needReply() && l.protocol&pReplyAck != 0:
			err = l.replyU64(h.Request, 0)
		}
		if err != nil {
			return err
		}
	}
}

// fail answers a refused request whose sender waits for an answer.
func (l *Link) fail(h header) {
	if h.Flags&flagNeedReply != 0 && l.protocol&pReplyAck != 0 || expectsReply(h.Request) {
		l.replyU64(h.Request, 1)
	}
}

// expectsReply lists the requests answered whether or not NEED_REPLY is
// set.
func expectsReply(req uint32) bool {
	switch req {
	case reqGetFeatures, reqGetProtocolFeatures, reqGetVringBase, reqGetQueueNum,
		reqGetConfig, reqGetMaxMemSlots, reqGetStatus, reqSetLogBase:
		return true
	}
	return false
}

func (l *Link) replyU64(req uint32, v uint64) error { return l.reply(req, u64Reply(v)) }

// reply sends a reply: the request's number, flags exactly version|REPLY
// (QEMU refuses anything else), and the payload.
func (l *Link) reply(req uint32, payload []byte) error {
	b := make([]byte, hdrSize+len(payload))
	header{Request: req, Flags: flagVersion | flagReply, Size: uint32(len(payload))}.encode(b)
	copy(b[hdrSize:], payload)
	_, err := l.conn.Write(b)
	return err
}

func u64Reply(v uint64) []byte {
	b := make([]byte, 8)
	binary.NativeEndian.PutUint64(b, v)
	return b
}

// handle carries out one request and returns its explicit reply, if it
// has one. The message's descriptors are handle's: kept or closed.
func (l *Link) handle(m *message) ([]byte, error) {
	fds := m.fds
	switch m.hdr.Request {
	case reqGetFeatures:
		return u64Reply(l.offered), nil
	case reqSetFeatures:
		return nil, l.setFeatures(m.u64)
	case reqGetProtocolFeatures:
		return u64Reply(l.protoOffr), nil
	case reqSetProtocolFeatures:
		if m.u64&^l.protoOffr != 0 {
			return nil, fmt.Errorf("%w: protocol features %#x not offered", ErrBadRequest, m.u64&^l.protoOffr)
		}
		l.protocol = m.u64
		return nil, nil
	case reqSetOwner:
		l.owner = true
		return nil, nil
	case reqResetOwner:
		// Deprecated; vhost-user.rst recommends disabling the rings.
		l.lockAll()
		for _, q := range l.queues {
			q.stop()
			q.enabled = false
		}
		l.unlockAll()
		l.wakeReader()
		return nil, nil
	case reqSetMemTable:
		mem, err := buildTable(m.regions, fds)
		closeFDs(fds)
		if err != nil {
			return nil, err
		}
		l.setMemory(mem)
		return nil, nil
	case reqAddMemReg:
		defer closeFDs(fds)
		if l.protocol&pConfigureMemSlots == 0 {
			return nil, fmt.Errorf("%w: CONFIGURE_MEM_SLOTS not negotiated", ErrBadRequest)
		}
		if x := l.mem.find(m.regions[0]); x != nil && x.MmapOffset == m.regions[0].MmapOffset {
			// The same region again, from another queue pair's
			// device: counted, not mapped twice.
			x.adds++
			return nil, nil
		}
		mr, err := mapRegion(m.regions[0], fds[0])
		if err != nil {
			return nil, err
		}
		mem, err := l.mem.with(mr)
		if err != nil {
			mr.unmap()
			return nil, err
		}
		l.setMemory(mem)
		return nil, nil
	case reqRemMemReg:
		closeFDs(fds)
		if l.protocol&pConfigureMemSlots == 0 {
			return nil, fmt.Errorf("%w: CONFIGURE_MEM_SLOTS not negotiated", ErrBadRequest)
		}
		if x := l.mem.find(m.regions[0]); x != nil && x.adds > 0 {
			x.adds--
			return nil, nil
		}
		mem, err := l.mem.without(m.regions[0])
		if err != nil {
			return nil, err
		}
		l.setMemory(mem)
		return nil, nil
	case reqGetMaxMemSlots:
		return u64Reply(maxMemSlots), nil
	case reqSetLogBase:
		defer closeFDs(fds)
		if l.protocol&pLogShmFD == 0 {
			return nil, fmt.Errorf("%w: LOG_SHMFD not negotiated", ErrBadRequest)
		}
		d, err := mapLog(fds[0], m.log[0], m.log[1])
		if err != nil {
			return nil, err
		}
		l.lockAll()
		old := l.dlog
		l.dlog = d
		for _, q := range l.queues {
			l.applyLog(q)
		}
		l.unlockAll()
		old.unmap()
		// With LOG_SHMFD QEMU waits for this answer.
		return u64Reply(0), nil
	case reqSetLogFD:
		// Optional, and only a hint that the log changed: not used.
		closeFDs(fds)
		return nil, nil
	case reqSetVringNum, reqSetVringBase, reqGetVringBase, reqSetVringEnable:
		return l.vringState(m)
	case reqSetVringAddr:
		return nil, l.setVringAddr(m.addr)
	case reqSetVringKick, reqSetVringCall, reqSetVringErr:
		return nil, l.setVringFD(m.hdr.Request, m.u64, fds)
	case reqGetQueueNum:
		return u64Reply(uint64(len(l.queues) / 2)), nil
	case reqSendRARP:
		if l.protocol&pRARP == 0 {
			return nil, fmt.Errorf("%w: RARP not negotiated", ErrBadRequest)
		}
		var mac [8]byte
		binary.NativeEndian.PutUint64(mac[:], m.u64)
		l.announce(net.HardwareAddr(mac[:6]))
		return nil, nil
	case reqNetSetMTU:
		if m.u64 < 68 || m.u64 > link.MaxFrameLen-link.EthHdrLen {
			return nil, fmt.Errorf("%w: MTU %d", ErrBadRequest, m.u64)
		}
		l.guestMTU = int(m.u64)
		return nil, nil
	case reqSetBackendReqFD:
		l.backendMu.Lock()
		if l.backend != nil {
			l.backend.Close()
		}
		l.backend = os.NewFile(uintptr(fds[0]), l.name+" back-end channel")
		// Configuration changes go to front-ends that read the
		// configuration from the back-end (CONFIG).
		l.backendConfig = l.protocol&pConfig != 0
		l.backendMu.Unlock()
		return nil, nil
	case reqGetConfig:
		return l.getConfig(m.config.Offset, m.config.Size, m.config.Flags), nil
	case reqSetConfig:
		// Nothing in a net device's configuration is the driver's to
		// write through the back-end.
		return nil, nil
	case reqSetStatus:
		l.status = uint8(m.u64)
		return nil, nil
	case reqGetStatus:
		return u64Reply(uint64(l.status)), nil
	}
	closeFDs(fds)
	return nil, fmt.Errorf("%w: %s", ErrUnknown, reqName(m.hdr.Request))
}

// setFeatures applies the features the front-end acknowledged: every one
// must have been offered.
func (l *Link) setFeatures(v uint64) error {
	if v&^l.offered != 0 {
		return fmt.Errorf("%w: features %#x not offered", ErrBadRequest, v&^l.offered)
	}
	l.lockAll()
	l.features = v
	l.hdrLen = link.VnetHdrLen
	if v&(fVersion1|fMrgRxbuf) == 0 {
		l.hdrLen = 10 // the legacy header has no num_buffers
	}
	for _, q := range l.queues {
		if q.ring != nil {
			q.ring.eventIdx = v&fEventIdx != 0
			q.ring.indirect = v&fIndirectDesc != 0
		}
		l.applyLog(q)
	}
	l.unlockAll()
	const guestOffloads = fGuestCsum | fGuestTSO4 | fGuestTSO6
	l.offloads.Store(v&guestOffloads == guestOffloads)
	l.wakeReader()
	return nil
}

// setMemory replaces the memory table: the rings are laid over the new
// one (a ring it no longer holds breaks), and the old table's regions the
// new one does not keep are unmapped once no data path can be in them.
func (l *Link) setMemory(mem *memory) {
	l.lockAll()
	old := l.mem
	l.mem = mem
	for _, q := range l.queues {
		if q.ring == nil {
			continue
		}
		r, err := newRing(mem, q.num, q.addr)
		if err != nil {
			q.breakRing(err)
			continue
		}
		l.carry(q.ring, r)
		q.ring = r
		l.applyLog(q)
	}
	if old != nil {
		for _, r := range old.regions {
			if !mem.contains(r) {
				r.unmap()
			}
		}
	}
	l.unlockAll()
	l.wakeReader()
}

// applyLog points q's ring at the dirty log while logging is on: the
// front-end gave a log and acknowledged LOG_ALL. The caller holds q's
// mutex (or every queue's) and, for the features, l's configuration.
func (l *Link) applyLog(q *queue) {
	if q.ring == nil {
		return
	}
	q.ring.dlog = nil
	if l.features&fLogAll != 0 && l.dlog != nil {
		q.ring.dlog = l.dlog
	}
	q.ring.usedLog, q.ring.logUsed = q.addr.Log, q.addr.Flags&vringFlagLog != 0
}

// carry moves a running ring's state onto its new view.
func (l *Link) carry(from, to *ring) {
	to.lastAvail, to.usedIdx, to.usedFlags = from.lastAvail, from.usedIdx, from.usedFlags
	to.signalled, to.signalledOK = from.signalled, from.signalledOK
	to.eventIdx, to.indirect = from.eventIdx, from.indirect
}

func (l *Link) queue(index uint32) (*queue, error) {
	if index >= uint32(len(l.queues)) {
		return nil, fmt.Errorf("%w: %d of %d", ErrBadRingIndex, index, len(l.queues))
	}
	return l.queues[index], nil
}

// unlockChanged releases q after the message loop changed it, and wakes
// its reader (a transmit queue's) to look at the ring again.
func (l *Link) unlockChanged(q *queue) {
	q.mu.Unlock()
	if q.index%2 == 1 {
		l.wakeQueue(q)
	}
}

// vringState handles the requests carrying {index, num}.
func (l *Link) vringState(m *message) ([]byte, error) {
	q, err := l.queue(m.state[0])
	if err != nil {
		return nil, err
	}
	num := m.state[1]
	q.mu.Lock()
	defer l.unlockChanged(q)
	switch m.hdr.Request {
	case reqSetVringNum:
		if q.ring != nil {
			return nil, fmt.Errorf("%w: ring %d resized while running", ErrBadRequest, q.index)
		}
		if num == 0 || num&(num-1) != 0 || num > maxRingSize {
			return nil, fmt.Errorf("%w: ring size %d", ErrBadRequest, num)
		}
		q.num, q.addrSet = uint16(num), false
	case reqSetVringBase:
		if q.ring != nil {
			return nil, fmt.Errorf("%w: ring %d rebased while running", ErrBadRequest, q.index)
		}
		if num > 0xffff {
			return nil, fmt.Errorf("%w: ring base %d", ErrBadRequest, num)
		}
		q.base = uint16(num)
	case reqGetVringBase:
		// The ring stops; the front-end may close its eventfds now
		// (and will send new ones to start it again).
		q.stop()
		q.closeFDs()
		b := make([]byte, 8)
		binary.NativeEndian.PutUint32(b, m.state[0])
		binary.NativeEndian.PutUint32(b[4:], uint32(q.base))
		return b, nil
	case reqSetVringEnable:
		if num > 1 {
			return nil, fmt.Errorf("%w: enable %d", ErrBadRequest, num)
		}
		q.enabled = num == 1
	}
	return nil, nil
}

// setVringAddr records a ring's addresses, which must lie in the memory
// table as it stands; a running ring moves over (QEMU resends the
// addresses to switch logging on and off).
func (l *Link) setVringAddr(a vringAddr) error {
	q, err := l.queue(a.Index)
	if err != nil {
		return err
	}
	if a.Flags&^vringFlagLog != 0 {
		return fmt.Errorf("%w: ring flags %#x", ErrBadRequest, a.Flags)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.num == 0 {
		return fmt.Errorf("%w: addresses of ring %d before its size", ErrBadRequest, a.Index)
	}
	r, err := newRing(l.mem, q.num, a)
	if err != nil {
		return fmt.Errorf("%w: ring %d: %w", ErrBadRequest, a.Index, err)
	}
	q.addr, q.addrSet = a, true
	if q.ring != nil {
		l.carry(q.ring, r)
		q.ring = r
	}
	l.applyLog(q)
	return nil
}

// setVringFD handles KICK, CALL and ERR: a new eventfd (or none) for a
// ring. A kick starts the ring (vhost-user.rst: rings start on the first
// kick; nothing is lost by starting on the kick's descriptor, since an
// empty ring does nothing).
func (l *Link) setVringFD(req uint32, v uint64, fds []int) error {
	q, err := l.queue(uint32(v & kickIndexMask))
	if err != nil {
		closeFDs(fds)
		return err
	}
	fd := -1
	if len(fds) == 1 {
		fd = fds[0]
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return fmt.Errorf("%w: eventfd: %w", ErrBadRequest, err)
		}
	}
	q.mu.Lock()
	defer l.unlockChanged(q)
	switch req {
	case reqSetVringKick:
		if !q.addrSet {
			if fd >= 0 {
				unix.Close(fd)
			}
			return fmt.Errorf("%w: kick for ring %d before its addresses", ErrBadRequest, q.index)
		}
		var f *os.File
		if fd >= 0 {
			f = os.NewFile(uintptr(fd), fmt.Sprintf("%s kick %d", l.name, q.index))
		}
		// The reader may be waiting on the old kick: setKick closes
		// it, which wakes the reader up.
		q.setKick(f, fd < 0)
		if q.ring == nil {
			r, err := newRing(l.mem, q.num, q.addr)
			if err != nil {
				return fmt.Errorf("%w: ring %d: %w", ErrBadRequest, q.index, err)
			}
			r.eventIdx = l.features&fEventIdx != 0
			r.indirect = l.features&fIndirectDesc != 0
			q.ring, q.broken = r, nil
			l.applyLog(q)
			r.start()
			if q.index%2 == 0 && !r.eventIdx {
				// Receive buffers are never waited for: the guest
				// need not kick for them.
				r.usedFlags = usedFNoNotify
				r.publish()
			}
		}
	case reqSetVringCall:
		q.setCall(fd)
		// The front-end swaps call eventfds (MSI-X masking); an
		// interrupt for entries used in between must not be lost.
		if q.ring != nil {
			signal(q.call)
		}
	case reqSetVringErr:
		if q.errFD >= 0 {
			unix.Close(q.errFD)
		}
		q.errFD = fd
	}
	return nil
}

// announce queues a RARP request from mac, as if the guest had sent it,
// so the network learns where the guest is now (after a migration).
func (l *Link) announce(mac net.HardwareAddr) {
	f := make([]byte, 42)
	copy(f[0:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:], mac)
	binary.BigEndian.PutUint16(f[12:], 0x8035) // RARP
	binary.BigEndian.PutUint16(f[14:], 1)      // Ethernet
	binary.BigEndian.PutUint16(f[16:], 0x0800) // IPv4
	f[18], f[19] = 6, 4
	binary.BigEndian.PutUint16(f[20:], 3) // reverse request
	copy(f[22:], mac)
	copy(f[32:], mac)
	l.injectMu.Lock()
	if len(l.inject) < 4 {
		l.inject = append(l.inject, f)
	}
	l.injectMu.Unlock()
	l.wakeQueue(l.txq(0))
}

// SetCarrier sets the link status the device reports (virtio-net's
// status field) and tells the front-end through the back-end channel
// (CONFIG_CHANGE_MSG), so the guest sees its link go down or up. A
// front-end that does not read its channel does not hold the caller up:
// the message is sent without waiting, or not at all.
func (l *Link) SetCarrier(up bool) {
	if l.carrierDown.Swap(!up) == !up {
		return
	}
	l.backendMu.Lock()
	defer l.backendMu.Unlock()
	if l.backend == nil || !l.backendConfig {
		return
	}
	var b [hdrSize]byte
	header{Request: backendConfigChange, Flags: flagVersion}.encode(b[:])
	rc, err := l.backend.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		if _, err := unix.SendmsgN(int(fd), b[:], nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL); err != nil {
			l.log.Warn("configuration change not sent", "link", l.name, "err", err)
		}
	})
}

// Virtio-net configuration space (virtio 1.x, 5.1.4), as GET_CONFIG reads
// it: mac[6], status, max_virtqueue_pairs, mtu.
const (
	configLen    = 12
	statusLinkUp = 1
)

func (l *Link) getConfig(offset, size, flags uint32) []byte {
	var cfg [configLen]byte
	copy(cfg[0:], l.mac)
	if !l.carrierDown.Load() {
		binary.LittleEndian.PutUint16(cfg[6:], statusLinkUp)
	}
	binary.LittleEndian.PutUint16(cfg[8:], uint16(len(l.queues)/2))
	binary.LittleEndian.PutUint16(cfg[10:], uint16(l.mtu))
	out := make([]byte, sizeConfigHdr+int(size))
	binary.NativeEndian.PutUint32(out[0:], offset)
	binary.NativeEndian.PutUint32(out[4:], size)
	binary.NativeEndian.PutUint32(out[8:], flags)
	if uint64(offset)+uint64(size) > configLen {
		// vhost-user.rst: an empty payload says the read failed.
		return []byte{}
	}
	copy(out[sizeConfigHdr:], cfg[offset:offset+size])
	return out
}
