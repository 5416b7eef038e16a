package gobgptest

import (
	"testing"

	"github.com/BurntSushi/toml"
)

// TestTOML checks the rendered gobgpd configuration is TOML with the
// prefix limit under the family it limits.
func TestTOML(t *testing.T) {
	c := Config{ASN: 64500, RouterID: "10.0.0.1", Neighbors: []Neighbor{{
		Address: "10.0.0.2", PeerASN: 64512, Families: []string{"ipv4-unicast", "ipv4-flowspec"},
		MaxPrefixes: map[string]int{"ipv4-flowspec": 5},
	}}}
	var got struct {
		Global struct {
			Config struct {
				AS       uint32 `toml:"as"`
				RouterID string `toml:"router-id"`
				Port     int    `toml:"port"`
			} `toml:"config"`
		} `toml:"global"`
		Neighbors []struct {
			Config struct {
				NeighborAddress string `toml:"neighbor-address"`
				PeerAS          uint32 `toml:"peer-as"`
			} `toml:"config"`
			Timers struct {
				Config struct {
					ConnectRetry int `toml:"connect-retry"`
					IdleHold     int `toml:"idle-hold-time-after-reset"`
				} `toml:"config"`
			} `toml:"timers"`
			Transport struct {
				Config struct {
					Passive bool `toml:"passive-mode"`
				} `toml:"config"`
			} `toml:"transport"`
			AfiSafis []struct {
				Config struct {
					Name string `toml:"afi-safi-name"`
				} `toml:"config"`
				PrefixLimit struct {
					Config struct {
						MaxPrefixes int `toml:"max-prefixes"`
					} `toml:"config"`
				} `toml:"prefix-limit"`
			} `toml:"afi-safis"`
		} `toml:"neighbors"`
	}
	md, err := toml.Decode(c.TOML(), &got)
	if err != nil {
		t.Fatalf("%v\n%s", err, c.TOML())
	}
	if u := md.Undecoded(); len(u) > 0 {
		t.Fatalf("keys not understood by the test: %v", u)
	}
	n := got.Neighbors
	if got.Global.Config.AS != 64500 || len(n) != 1 || n[0].Config.NeighborAddress != "10.0.0.2" || !n[0].Transport.Config.Passive || len(n[0].AfiSafis) != 2 {
		t.Fatalf("decoded %+v", got)
	}
	if n[0].AfiSafis[0].PrefixLimit.Config.MaxPrefixes != 0 || n[0].AfiSafis[1].Config.Name != "ipv4-flowspec" || n[0].AfiSafis[1].PrefixLimit.Config.MaxPrefixes != 5 {
		t.Fatalf("prefix limit misplaced: %+v", n[0].AfiSafis)
	}
}
