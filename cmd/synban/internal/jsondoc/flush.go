package jsondoc

// Flush is `flush --json`.
type Flush struct {
	Backend string `json:"backend"`
}
