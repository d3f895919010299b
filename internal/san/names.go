package san

import "strings"

// NormName lower-cases a host name and drops spaces around it and one trailing dot.
func NormName(s string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "."))
}

// MatchName reports whether the certificate name pattern matches host, as Jabber and
// Expressway match them: case-insensitive, trailing dot ignored, and a wildcard honoured only
// where WildcardProblem finds none, as the whole left-most label ("*.example.com" matches
// "a.example.com", not "example.com" nor "a.b.example.com"; "f*.example.com" and "*.com"
// match nothing).
func MatchName(pattern, host string) bool {
	pattern, host = NormName(pattern), NormName(host)
	if pattern == "" || host == "" {
		return false
	}
	if !strings.Contains(pattern, "*") {
		return pattern == host
	}
	if WildcardProblem(pattern) != "" {
		return false
	}
	label, tail, ok := strings.Cut(host, ".")
	return ok && label != "" && tail == pattern[2:]
}

// WildcardProblem says what is wrong with where name puts its '*', or "" when name has no
// wildcard or has it as the whole left-most label of a name with at least two more labels.
func WildcardProblem(name string) string {
	name = NormName(name)
	if !strings.Contains(name, "*") {
		return ""
	}
	labels := strings.Split(name, ".")
	if labels[0] != "*" {
		if strings.Contains(labels[0], "*") {
			return "'*' must be the whole left-most label, not part of it"
		}
		return "'*' is allowed only in the left-most label"
	}
	for _, l := range labels[1:] {
		if strings.Contains(l, "*") {
			return "only one '*' is allowed, as the left-most label"
		}
		if l == "" {
			return "empty label after the wildcard"
		}
	}
	if len(labels) < 3 {
		return "a wildcard needs at least two labels after it (it would cover a whole top-level domain)"
	}
	return ""
}
