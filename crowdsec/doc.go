// Package crowdsec is a small typed client for a CrowdSec Local API (LAPI),
// version 1, written over net/http against the LAPI's published swagger. It
// knows only the fields synban uses:
//
//   - machine side (JWT from POST /v1/watchers/login, renewed once on 401):
//     push alerts carrying ban decisions (POST /v1/alerts, batched), delete
//     synban's own decisions by address or range (DELETE /v1/decisions with
//     an origin filter) or by id (DELETE /v1/decisions/{id});
//   - bouncer side (X-Api-Key): the decision stream (GET
//     /v1/decisions/stream) with its startup, origins, scopes and
//     scenarios_containing filters;
//   - GET /health.
//
// Every call takes a context and is bounded by the client's timeout;
// response bodies are read through a size limit (ErrResponseTooLarge when
// exceeded). Failures are typed: *APIError for an HTTP status from the server
// (method, endpoint, status and the server's message), *RequestError for a
// request that got no usable answer (refused, timed out, body too large or
// not JSON). Neither carries the password, the JWT or the API key.
//
// Decision values become netip.Prefix values (Ip → /32 or /128, Range →
// its masked prefix, IPv4-mapped IPv6 → IPv4); values that do not parse are
// skipped and counted in the Stream, never fatal. Durations are Go duration
// strings as the LAPI sends them, negative for deleted decisions.
//
// # Crash safety of pull in cron runs
//
// A cron run pulls with startup=true every time and reconciles: Desired
// turns the full stream into the complete set of bans the fleet wants now
// (one per prefix, the longest), and the caller makes its pulled bans equal
// to that set — adding what is missing, removing pulled bans no longer
// listed. Nothing is remembered between runs, so a crash anywhere between
// pull and apply leaves nothing to repair: the next run computes the same
// desired set from scratch. Deletions, expiries and a LAPI whose database
// was reset are all handled the same way, by absence.
//
// The alternative, deltas (startup=false), cannot be made crash-safe from
// the client: the stream's cursor is kept by the LAPI per bouncer and moves
// when the server answers, not when the client has applied the answer (the
// tests show a second delta pull no longer repeats a deletion the first one
// returned). A run that crashed after pulling would silently lose those
// changes until the decisions expire. Deltas remain right for a long-running
// process that pulls startup=true once and then keeps its state in memory;
// Stream offers both.
//
// The cost of the full pull is measured by BenchmarkDecodeStream50k and
// TestLAPI50kPushAndPull: 50,000 decisions are about 7 MB of JSON, which
// crowdsec 1.4.6 on sqlite takes some seconds to produce (5-7 s on two
// shared cores) and this package decodes and reduces in 0.2-0.8 s with about
// 43 MB allocated — affordable once a minute.
//
// # crowdsec 1.4.6 details
//
//   - A machine login is refused ("bad user agent") unless the User-Agent
//     has the form NAME/VERSION; the client sends DefaultUserAgent.
//   - The JWT signing key is made when the LAPI starts: a restart makes the
//     held token fail with 401, which the renewal handles.
//   - DELETE /v1/decisions honours the origin and scenario filters, which
//     keeps synban's unbans to its own decisions.
//   - A delta stream does not list a value as deleted while another
//     decision still bans it, and repeats recent deletions for a short
//     overlap; new decisions are never repeated.
//   - nbDeleted is a string.
package crowdsec
