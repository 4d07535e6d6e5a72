package gvproxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"gopkg.in/yaml.v3"
)

// maxConfig bounds the YAML file read.
const maxConfig = 1 << 20

// File is gvproxy's YAML configuration (-config FILE.yaml), key for key.
// Unknown keys are ignored, as gvproxy ignores them.
type File struct {
	Listen     []string `yaml:"listen"`
	LogLevel   string   `yaml:"log-level"`
	Stack      Stack    `yaml:"stack"`
	Interfaces struct {
		VPNKit string `yaml:"vpnkit"`
		Qemu   string `yaml:"qemu"`
		Bess   string `yaml:"bess"`
		Stdio  string `yaml:"stdio"`
		Vfkit  string `yaml:"vfkit"`
	} `yaml:"interfaces"`
	Forwards          []SSHForward `yaml:"forwards"`
	PIDFile           string       `yaml:"pid-file"`
	LogFile           string       `yaml:"log-file"`
	Services          string       `yaml:"services"`
	EC2MetadataAccess bool         `yaml:"ec2-metadata-access"`
	Notification      string       `yaml:"notification"`
}

// Stack is the file's "stack:" section (gvisor-tap-vsock's types.Configuration).
type Stack struct {
	Debug             bool              `yaml:"debug"`
	CaptureFile       string            `yaml:"capture-file"`
	MTU               int               `yaml:"mtu"`
	Subnet            string            `yaml:"subnet"`
	GatewayIP         string            `yaml:"gatewayIP"`
	GatewayMacAddress string            `yaml:"gatewayMacAddress"`
	DNS               []YAMLZone        `yaml:"dns"`
	DNSSearchDomains  []string          `yaml:"dnsSearchDomains"`
	Forwards          map[string]string `yaml:"forwards"`
	NAT               map[string]string `yaml:"nat"`
	GatewayVirtualIPs []string          `yaml:"gatewayVirtualIPs"`
	DHCPStaticLeases  map[string]string `yaml:"dhcpStaticLeases"`
	VpnKitUUIDMacs    map[string]string `yaml:"vpnKitUUIDMacAddresses"`
	EC2MetadataAccess bool              `yaml:"ec2MetadataAccess"`
	BlockAllOutbound  bool              `yaml:"blockAllOutbound"`
}

// YAMLZone is a DNS zone as the file writes it.
type YAMLZone struct {
	Name      string       `yaml:"name"`
	Records   []YAMLRecord `yaml:"records"`
	DefaultIP string       `yaml:"defaultIP"`
}

// YAMLRecord is one record of a YAMLZone.
type YAMLRecord struct {
	Name   string `yaml:"name"`
	IP     string `yaml:"ip"`
	Regexp string `yaml:"regexp"`
}

// SSHForward is a host unix socket tunnelled over SSH to a socket in the
// guest (-forward-sock, -forward-dest, -forward-user, -forward-identity).
type SSHForward struct {
	Socket   string `yaml:"socket"`
	Dest     string `yaml:"dest"`
	User     string `yaml:"user"`
	Identity string `yaml:"identity"`
}

// LoadFile reads a configuration file.
func LoadFile(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read config file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfig+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read config file: %w", err)
	}
	if len(b) > maxConfig {
		return nil, fmt.Errorf("config file %s: larger than %d bytes", path, maxConfig)
	}
	return ParseFile(b)
}

// ParseFile parses a configuration; an empty one is an empty File.
func ParseFile(b []byte) (*File, error) {
	var c File
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("failed to parse configuration: %w", err)
	}
	return &c, nil
}

// parseMAC reads an Ethernet address.
func parseMAC(s string) (net.HardwareAddr, error) {
	m, err := net.ParseMAC(s)
	if err != nil || len(m) != 6 {
		return nil, fmt.Errorf("%q is not an Ethernet address", s)
	}
	return m, nil
}
