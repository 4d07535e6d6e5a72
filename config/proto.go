package config

// Proto is the transport protocol of a flow or a published port.
type Proto string

// The protocols slipway carries.
const (
	TCP  Proto = "tcp"
	UDP  Proto = "udp"
	ICMP Proto = "icmp"
)
