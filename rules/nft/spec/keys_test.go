package spec

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/google/nftables"
)

// TestKeysEncodeAsEncode: elements encoded with keys from a Keys block are
// the ones Encode makes, for single addresses, prefixes (start and end) and
// a prefix that runs to the last address; and no two keys share bytes.
func TestKeysEncodeAsEncode(t *testing.T) {
	var k Keys
	var got, want []nftables.SetElement
	for _, s := range []SetSpec{{Kind: KindBan, Timeout: true}, {Kind: KindBan, Interval: true, Timeout: true}, {Kind: KindBan, V6: true, Interval: true}} {
		for i := range 5000 { // more than one block
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24+i%9)
			if s.V6 {
				p = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 8), byte(i)}), 48+i%81)
			}
			if i == 0 {
				p = netip.MustParsePrefix("255.255.255.0/24")
				if s.V6 {
					p = netip.MustParsePrefix("ffff::/16")
				}
			}
			got = k.AppendEncode(got, s, p, time.Duration(i)*time.Second, "c")
			want = append(want, Encode(s, p, time.Duration(i)*time.Second, "c")...)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatal("elements encoded with Keys differ from Encode's")
	}
	for i := range got {
		for j := range got[i].Key {
			got[i].Key[j] = byte(i)
		}
	}
	for i := range got {
		for j := range got[i].Key {
			if got[i].Key[j] != byte(i) {
				t.Fatalf("element %d's key shares bytes with another's", i)
			}
		}
	}
}
