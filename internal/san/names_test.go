package san

import "testing"

func TestMatchName(t *testing.T) {
	for _, tc := range []struct {
		pattern, host string
		want          bool
	}{
		{"mra.example.com", "MRA.Example.com.", true},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.b.example.com", false},
		{"f*.example.com", "foo.example.com", false},
		{"*.com", "example.com", false}, // a whole top-level domain
		{"*.*.example.com", "a.b.example.com", false},
		{"*..example.com", "a..example.com", false},
		{"", "", false},
	} {
		if got := MatchName(tc.pattern, tc.host); got != tc.want {
			t.Errorf("MatchName(%q, %q) = %v, want %v", tc.pattern, tc.host, got, tc.want)
		}
	}
	if WildcardProblem("*.com") == "" || WildcardProblem("*.example.com") != "" || WildcardProblem("a.example.com") != "" {
		t.Error("WildcardProblem")
	}
}
