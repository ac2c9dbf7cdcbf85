package sync

import "testing"

// FuzzIntentDecode feeds stored intent values to the decoder: damage is an
// error, never a panic, and whatever decodes survives a round trip. Seeds
// live in testdata/fuzz/FuzzIntentDecode/ (FuzzRecordDecode, in
// state_test.go, has its own there too).
func FuzzIntentDecode(f *testing.F) {
	f.Add(Intent{Upload: true, Src: Side{Size: 5, ModTime: tA, Precision: 1e9}}.marshal())
	f.Add(Intent{}.marshal())
	f.Add([]byte{intentVersion, 2, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var in Intent
		if in.unmarshal(b) != nil {
			return
		}
		if in.Src.Size < 0 || in.Src.Precision < 0 {
			t.Fatalf("decoded %+v with a negative size or precision", in)
		}
		var again Intent
		if err := again.unmarshal(in.marshal()); err != nil || again != in {
			t.Fatalf("decoded %+v does not round-trip: %+v, %v", in, again, err)
		}
	})
}
