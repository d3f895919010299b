package driver

import (
	"fmt"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// NewHistogram returns an empty latency histogram in microseconds over the range every results
// file uses (HistMinMicros … HistMaxMicros, HistSigFigs digits). Not safe for concurrent use.
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(HistMinMicros, HistMaxMicros, HistSigFigs)
}

// EncodeHistogram returns h in the HdrHistogram V2 compressed base64 form ("" for an empty h).
func EncodeHistogram(h *hdrhistogram.Histogram) (string, error) {
	if h == nil || h.TotalCount() == 0 {
		return "", nil
	}
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return "", fmt.Errorf("driver: encode histogram: %w", err)
	}
	return string(b), nil
}

// DecodeHistogram reads a histogram written by EncodeHistogram; "" gives an empty histogram.
func DecodeHistogram(s string) (*hdrhistogram.Histogram, error) {
	if s == "" {
		return NewHistogram(), nil
	}
	h, err := hdrhistogram.Decode([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("%w: histogram does not decode: %v", ErrBadResults, err)
	}
	return h, nil
}

// QuantilesOf reads p50, p90, p99, p99.9, max and mean from a microsecond histogram, in
// milliseconds.
func QuantilesOf(h *hdrhistogram.Histogram) Quantiles {
	if h == nil || h.TotalCount() == 0 {
		return Quantiles{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Quantiles{
		P50:  ms(h.ValueAtQuantile(50)),
		P90:  ms(h.ValueAtQuantile(90)),
		P99:  ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)),
		Max:  ms(h.Max()),
		Mean: h.Mean() / 1000,
	}
}
