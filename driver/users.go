package driver

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"strings"
)

// LoginFunc runs one login for user (user@domain). sessions is the simulated device's TLS session
// cache when the run resumes sessions, else nil. (*Client).Login is one.
type LoginFunc func(ctx context.Context, user string, sessions tls.ClientSessionCache) *Trace

// Users is the population a load run draws from: login i goes to At(i % Len()). Implementations
// are safe for concurrent use.
type Users interface {
	Len() int64
	At(i int64) string
}

// UserList is a fixed list of addresses.
type UserList []string

// Len implements Users.
func (l UserList) Len() int64 { return int64(len(l)) }

// At implements Users.
func (l UserList) At(i int64) string { return l[i%int64(len(l))] }

// ReadUsers reads addresses, one user@domain per line; blank lines and lines starting with # are
// skipped. A malformed line is an error naming its line number.
func ReadUsers(r io.Reader) (UserList, error) {
	var out UserList
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if _, _, err := SplitAddress(line); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no addresses (want one user@domain per line)", ErrBadAddress)
	}
	return out, nil
}

// SplitAddress splits user@domain into the user and the lower-cased service domain.
func SplitAddress(addr string) (user, domain string, err error) {
	user, domain, ok := strings.Cut(strings.TrimSpace(addr), "@")
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	switch {
	case !ok || user == "" || domain == "":
		return "", "", fmt.Errorf("%w: %q: want user@domain, like bob@example.com", ErrBadAddress, addr)
	case strings.ContainsAny(user, " \t:/@") || strings.ContainsAny(domain, " \t:/@"):
		return "", "", fmt.Errorf("%w: %q: user and domain may not contain spaces, ':', '/' or a second '@'", ErrBadAddress, addr)
	case !strings.Contains(domain, "."):
		return "", "", fmt.Errorf("%w: %q: the service domain %q needs at least two labels, like example.com", ErrBadAddress, addr, domain)
	}
	return user, domain, nil
}
