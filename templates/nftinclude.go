package templates

import (
	"fmt"
	"io"

	"github.com/synban/synban/rules"
)

// NFTInclude writes the file `synban render nft-include` prints, for
// /etc/nftables.conf to include (`include "/etc/nftables.d/synban.nft"`) so
// that synban's nftables structure survives `systemctl restart nftables`;
// the next run refills the sets from the state store. Elements (bans,
// allow entries) are never in it.
//
// In table mode it is synban's whole table (sets and base chains with their
// rules), written so that loading it again keeps the sets' elements. In sets
// mode (rs.SetsMode) it declares synban's sets inside the operator's table
// rs.Table and shows, commented out, the rules the operator pastes into
// their own chains.
func NFTInclude(w io.Writer, rs *rules.Ruleset, source string) error {
	d, err := newNFTData(rs, source)
	if err != nil {
		return fmt.Errorf("render nft include: %w", err)
	}
	d.NoElements = true
	name := "nftinclude"
	if rs.SetsMode() {
		name = "setsinclude"
	}
	return execute(w, name, d, "render nft include")
}
