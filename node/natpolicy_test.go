package node

import (
	"testing"

	ma "github.com/multiformats/go-multiaddr"
)

func TestReachabilityPolicy(t *testing.T) {
	lan := []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1"), ma.StringCast("/ip4/192.168.1.10")}
	pub := append(lan, ma.StringCast("/ip4/93.184.216.34"))
	boot := []string{"/ip4/203.0.113.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"}
	for _, tc := range []struct {
		name   string
		roles  []string
		reach  string
		boot   []string
		ifaces []ma.Multiaddr
		want   string
	}{
		{"worker behind NAT: private, relays kept", []string{RoleWorker}, "auto", boot, lan, "private"},
		{"empty means auto", []string{RoleClient}, "", boot, lan, "private"},
		{"public interface: AutoNAT decides", []string{RoleWorker}, "auto", boot, pub, "auto"},
		{"forced public wins", []string{RoleWorker}, "public", boot, lan, "public"},
		{"forced private stays", []string{RoleWorker}, "private", boot, pub, "private"},
		{"authority: AutoNAT decides", []string{RoleAuthority}, "auto", boot, lan, "auto"},
		{"no authorities, no relays: AutoNAT decides", []string{RoleWorker}, "auto", nil, lan, "auto"},
		{"no interfaces known: treated as NATed", []string{RoleWorker}, "auto", boot, nil, "private"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Roles: tc.roles, Bootstrap: tc.boot, NAT: NATConfig{Reachability: tc.reach}}
			if got := reachabilityPolicy(&cfg, tc.ifaces); got != tc.want {
				t.Fatalf("reachabilityPolicy = %q, want %q", got, tc.want)
			}
		})
	}
}
