package crowdsec

import (
	"bytes"
	"fmt"
	"testing"
)

// stream50k is a startup stream of 50,000 decisions in the LAPI 1.4.6's
// exact shape: IPv4 and IPv6 addresses and ranges.
func stream50k() []byte {
	var b bytes.Buffer
	b.WriteString(`{"deleted":null,"new":[`)
	for i := range 50000 {
		if i > 0 {
			b.WriteByte(',')
		}
		var scope, value string
		switch i % 4 {
		case 0, 1:
			scope, value = "Ip", fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		case 2:
			scope, value = "Ip", fmt.Sprintf("2001:db8::%x", i)
		default:
			scope, value = "Range", fmt.Sprintf("10.%d.%d.0/24", 128+i>>16&127, i>>8&255)
		}
		fmt.Fprintf(&b, `{"duration":"59m%d.509284747s","id":%d,"origin":"synban","scenario":"synban/syn-flood","scope":"%s","type":"ban","value":"%s"}`,
			i%60, i+1, scope, value)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// BenchmarkDecodeStream50k measures decoding and parsing one startup stream
// of 50,000 decisions and reducing it with Desired, as a cron run does.
func BenchmarkDecodeStream50k(b *testing.B) {
	body := stream50k()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		s, err := DecodeStream(body)
		if err != nil {
			b.Fatal(err)
		}
		if len(s.New) != 50000 || s.Skipped != 0 {
			b.Fatalf("decoded %d, skipped %d", len(s.New), s.Skipped)
		}
		if w, _ := Desired(s); len(w) == 0 {
			b.Fatal("nothing desired")
		}
	}
}
