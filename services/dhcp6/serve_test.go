package dhcp6

import (
	"context"
	"testing"

	"github.com/slipway-net/slipway/services/internal/servicetest"
)

func TestServeOverLoopbackUDP(t *testing.T) {
	s, _ := newTestServer(t, nil)
	server := servicetest.ListenUDP(t, "udp6")
	client := servicetest.ListenUDP(t, "udp6")
	stop := servicetest.Start(t, func(ctx context.Context) error { return s.Serve(ctx, server) })
	roundTrip := func(b []byte) reply { return decode(t, servicetest.RoundTrip(t, client, server.LocalAddr(), b)) }

	duid := duidLL(1)
	adv := roundTrip(msg(msgSolicit, 1, clientIDOpt(duid), elapsedOpt(0), iaNAOpt(1, 0, 0), oroOpt(23, 24)))
	if adv.mtype != msgAdvertise {
		t.Fatalf("SOLICIT answered with type %d", adv.mtype)
	}

	// Garbage in between is dropped without stopping the loop.
	if _, err := client.WriteTo([]byte("not dhcpv6"), server.LocalAddr()); err != nil {
		t.Fatal(err)
	}

	rep := roundTrip(msg(msgRequest, 2, clientIDOpt(duid), serverIDOpt(serverDUID), iaNAOpt(1, 0, 0, iaAddrOpt(first, 0, 0))))
	if ia := rep.ias(t, optIANA); rep.mtype != msgReply || len(ia) != 1 || ia[0].addrs[0].addr != first {
		t.Fatalf("REQUEST reply %d %+v", rep.mtype, ia)
	}
	info := roundTrip(msg(msgInformationRequest, 3, oroOpt(23)))
	if len(info.opts[optDNSServers]) != 1 {
		t.Fatalf("INFORMATION-REQUEST reply options %v", info.order)
	}

	stop()
	st := s.Stats()
	if st.Received != 4 || st.Replied != 3 || st.Dropped[dropNotClientMsg] != 1 {
		t.Fatalf("stats %+v", st)
	}
	if l := s.Leases(); len(l) != 1 || l[0].Addr != first {
		t.Fatalf("leases %+v", l)
	}
}

func TestServeLoop(t *testing.T) {
	s, _ := newTestServer(t, nil)
	servicetest.CheckServeLoop(t, "udp6", s.Serve, func(i int) []byte { return msg(msgInformationRequest, uint32(i)) },
		func() uint64 { return s.Stats().Replied })
}
