package jsondoc

// Policy is `policy default --json` and `policy show --json`: the
// policy's source and its TOML text.
type Policy struct {
	Policy string `json:"policy"`
	TOML   string `json:"toml"`
}
