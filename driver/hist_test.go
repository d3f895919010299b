package driver

import "testing"

func TestHistogramRoundTrip(t *testing.T) {
	h := NewHistogram()
	for v := int64(1); v <= 100000; v *= 3 {
		if err := h.RecordValue(v); err != nil {
			t.Fatal(err)
		}
	}
	s, err := EncodeHistogram(h)
	if err != nil || s == "" {
		t.Fatalf("encode: %q, %v", s, err)
	}
	back, err := DecodeHistogram(s)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Equals(h) {
		t.Fatalf("decoded histogram differs: %d values, want %d", back.TotalCount(), h.TotalCount())
	}
	if q := QuantilesOf(back); q.Max < 59 || q.Max > 60 { // 3^10 = 59049 µs
		t.Errorf("max = %v ms, want 59.0", q.Max)
	}
	if _, err := DecodeHistogram("not a histogram"); err == nil {
		t.Error("garbage decoded without error")
	}
}
