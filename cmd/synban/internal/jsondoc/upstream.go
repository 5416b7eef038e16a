package jsondoc

import (
	"time"

	"github.com/synban/synban/engine"
	"github.com/synban/synban/upstream"
)

// Announcement is one upstream announcement (plan, status): cli is the
// gobgp command that makes it; source and next_hop are "" when absent,
// rate_bytes is bytes (not bits) per second.
type Announcement struct {
	CLI         string   `json:"cli"`
	Kind        string   `json:"kind"`
	Family      string   `json:"family"`
	Destination string   `json:"destination"`
	Source      string   `json:"source"`
	Ports       []uint16 `json:"ports"`
	Action      string   `json:"action"`
	RateBytes   uint64   `json:"rate_bytes"`
	Communities []string `json:"communities"`
	NextHop     string   `json:"next_hop"`
}

func announcementOf(an upstream.Announcement) Announcement {
	j := Announcement{CLI: an.CLI(), Kind: string(an.Kind), Family: an.Family(), Destination: an.Destination.String(),
		Ports: nonNil(an.Ports), Action: string(an.Action), RateBytes: an.RateBytes, Communities: make([]string, 0, len(an.Communities))}
	if an.Source.IsValid() {
		j.Source = an.Source.String()
	}
	if an.NextHop.IsValid() {
		j.NextHop = an.NextHop.String()
	}
	for _, c := range an.Communities {
		j.Communities = append(j.Communities, c.String())
	}
	return j
}

// Refused is an announcement upstream.Check refused, and why.
type Refused struct {
	Announcement
	Why string `json:"why"`
}

// UpstreamPlan is plan's "upstream": what a run would hand the speaker
// (rates in bits per second; error "" when measuring went well).
type UpstreamPlan struct {
	Reason        string         `json:"reason"`
	UplinkBps     float64        `json:"uplink_bps"`
	CapacityBps   float64        `json:"capacity_bps"`
	Saturated     bool           `json:"saturated"`
	Announcements []Announcement `json:"announcements"`
	Refused       []Refused      `json:"refused"`
	Error         string         `json:"error"`
}

// UpstreamPlanOf is the plan's upstream part; nil without a plan.
func UpstreamPlanOf(plan *engine.UpstreamPlan) *UpstreamPlan {
	if plan == nil {
		return nil
	}
	doc := &UpstreamPlan{Reason: plan.Decision.Reason, UplinkBps: plan.Input.UplinkBps, CapacityBps: plan.Input.CapacityBps,
		Saturated: plan.Input.Saturated(), Announcements: make([]Announcement, 0, len(plan.Announcements)),
		Refused: make([]Refused, 0, len(plan.Refused))}
	for _, an := range plan.Announcements {
		doc.Announcements = append(doc.Announcements, announcementOf(an))
	}
	for _, r := range plan.Refused {
		doc.Refused = append(doc.Refused, Refused{announcementOf(r.Announcement), r.Reason})
	}
	if plan.Err != nil {
		doc.Error = plan.Err.Error()
	}
	return doc
}

// Neighbor is one BGP session of the speaker (status): advertised counts
// the routes sent per family.
type Neighbor struct {
	Address    string            `json:"address"`
	PeerASN    uint32            `json:"peer_asn"`
	State      string            `json:"state"`
	Families   []string          `json:"families"`
	Advertised map[string]uint64 `json:"advertised"`
}

// LiveAnnouncement is an announcement the speaker holds, age_seconds old
// (as it measured, plus its status file's age), and how each neighbor
// carrying its family has it.
type LiveAnnouncement struct {
	Announcement
	Age       float64                `json:"age_seconds"`
	Neighbors []AnnouncementNeighbor `json:"neighbors"`
}

// AnnouncementNeighbor is one announcement on one neighbor: session_up
// (established), sent (in its adj-rib-out on that session), received (it
// sent the route back, as a route server may; false says nothing).
type AnnouncementNeighbor struct {
	Address   string `json:"address"`
	SessionUp bool   `json:"session_up"`
	Sent      bool   `json:"sent"`
	Received  bool   `json:"received"`
}

// Speaker is what the speaker last wrote in its status file.
type Speaker struct {
	PID           int                `json:"pid"`
	StatusAge     float64            `json:"status_age_seconds"`
	Neighbors     []Neighbor         `json:"neighbors"`
	Announcements []LiveAnnouncement `json:"announcements"`
	Deferred      int                `json:"deferred"`
}

// UpstreamStatus is status's "upstream": running is false when no speaker
// left a status file (speaker null) or its file is stale.
type UpstreamStatus struct {
	Running bool     `json:"running"`
	Speaker *Speaker `json:"speaker"`
}

// UpstreamStatusOf is the speaker's status file st (nil: none) read at
// now.
func UpstreamStatusOf(st *upstream.StatusReport, now time.Time) *UpstreamStatus {
	doc := &UpstreamStatus{Running: st.Alive(now)}
	if st == nil {
		return doc
	}
	fileAge := max(now.Sub(st.Written), 0)
	sp := &Speaker{PID: st.PID, StatusAge: secs(fileAge), Deferred: st.Deferred,
		Neighbors: make([]Neighbor, 0, len(st.Neighbors)), Announcements: make([]LiveAnnouncement, 0, len(st.Announcements))}
	for _, n := range st.Neighbors {
		adv := make(map[string]uint64, len(n.Advertised))
		for k, v := range n.Advertised {
			adv[k] = v
		}
		sp.Neighbors = append(sp.Neighbors, Neighbor{Address: n.Address, PeerASN: n.PeerASN, State: n.State, Families: nonNil(n.Families), Advertised: adv})
	}
	for _, l := range st.Announcements {
		la := LiveAnnouncement{announcementOf(l.Announcement), secs(l.Age + fileAge), make([]AnnouncementNeighbor, 0, len(l.Neighbors))}
		for _, n := range l.Neighbors {
			la.Neighbors = append(la.Neighbors, AnnouncementNeighbor{Address: n.Address, SessionUp: n.SessionUp, Sent: n.Sent, Received: n.Received})
		}
		sp.Announcements = append(sp.Announcements, la)
	}
	doc.Speaker = sp
	return doc
}
