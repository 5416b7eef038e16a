package jsondoc

// Unban is `unban --json`.
type Unban struct {
	Backend   string `json:"backend"`
	Requested int    `json:"requested"`
	Unbanned  int    `json:"unbanned"`
}
