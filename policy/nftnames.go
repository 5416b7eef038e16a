package policy

// nftKeywords are words that nft 1.0.6 rejects as a table name ("syntax
// error, unexpected ..."), found by running `nft -c add table inet WORD` over
// nft's keywords in a throwaway network namespace. A table named like one of
// these could be created over netlink but not rendered as an nft script.
var nftKeywords = []string{
	"accept", "add", "ah", "all", "and", "arp", "auto-merge", "bridge",
	"cgroup", "chain", "comment", "comp", "constant", "continue", "counter",
	"cpu", "create", "ct", "day", "dccp", "define", "delete", "describe",
	"device", "devices", "dnat", "drop", "dst", "dup", "dynamic", "ecn",
	"element", "elements", "esp", "exists", "expires", "export", "exthdr",
	"fib", "flags", "flow", "flowtable", "flush", "frag", "fwd", "gc-interval",
	"goto", "handle", "hbh", "hook", "hour", "ibriport", "ibrname", "icmp",
	"icmpv6", "iif", "iifgroup", "iifname", "iiftype", "import", "include",
	"inet", "insert", "interval", "ip", "ip6", "ipsec", "jhash", "jump",
	"limit", "list", "log", "map", "mark", "masquerade", "meta", "meter", "mh",
	"missing", "monitor", "netdev", "nftrace", "not", "notrack", "numgen",
	"obriport", "obrname", "oif", "oifgroup", "oifname", "oiftype", "or", "osf",
	"policy", "position", "priority", "queue", "quota", "random", "redirect",
	"reject", "rename", "replace", "reset", "return", "rt", "rt0", "rt2",
	"rtclassid", "rule", "ruleset", "sctp", "secmark", "set", "size", "skgid",
	"skuid", "snat", "socket", "srh", "symhash", "synproxy", "table", "tcp",
	"th", "timeout", "tproxy", "type", "typeof", "udp", "vlan", "vmap", "xor",
	"xt",
}
