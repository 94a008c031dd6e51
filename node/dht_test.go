package node

import (
	"testing"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

func TestDHTMode(t *testing.T) {
	at := func(addrs ...string) []peer.AddrInfo {
		ai := peer.AddrInfo{ID: "a"}
		for _, s := range addrs {
			ai.Addrs = append(ai.Addrs, ma.StringCast(s))
		}
		return []peer.AddrInfo{ai}
	}
	lan, wan := at("/ip4/127.0.0.1/tcp/4001", "/ip4/192.168.1.2/tcp/4001"), at("/ip4/192.168.1.2/tcp/4001", "/ip4/8.8.8.8/tcp/4001")
	for _, c := range []struct {
		roles []string
		mode  string
		auths []peer.AddrInfo
		want  dht.ModeOpt
	}{
		{[]string{RoleAuthority}, "auto", nil, dht.ModeServer},
		{[]string{RoleWorker}, "auto", lan, dht.ModeServer}, // LAN: AutoNAT would say private
		{[]string{RoleWorker}, "auto", wan, dht.ModeAuto},   // the internet: AutoNAT decides
		{[]string{RoleWorker}, "auto", at("/dns4/a.example/tcp/1"), dht.ModeAuto},
		{[]string{RoleWorker}, "auto", nil, dht.ModeAuto},
		{[]string{RoleWorker}, "client", lan, dht.ModeClient},
		{[]string{RoleClient}, "auto", lan, dht.ModeAuto},
		{[]string{RoleClient}, "server", wan, dht.ModeServer},
		{[]string{RoleWorker, RoleClient}, "auto", lan, dht.ModeServer},
	} {
		cfg := DefaultConfig()
		cfg.Roles, cfg.DHTMode = c.roles, c.mode
		if got := dhtMode(&cfg, c.auths); got != c.want {
			t.Errorf("%v dht_mode %s, authorities %v: mode %v, want %v", c.roles, c.mode, c.auths, got, c.want)
		}
	}
}
