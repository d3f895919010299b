package driver

import (
	"fmt"
	"strconv"
	"strings"
)

// Shard is one part of a run split across driver processes (--shard I/N): shard I of N takes
// the users whose index is I modulo N, a disjoint part, and an N-th of the rate and count.
type Shard struct {
	I, N int
}

// ParseShard reads "I/N" with 0 ≤ I < N.
func ParseShard(s string) (Shard, error) {
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(strings.TrimSpace(a))
	n, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 0 || i >= n {
		return Shard{}, fmt.Errorf("shard %q: want I/N with 0 <= I < N, like 0/3 (a Kubernetes Indexed Job: $(JOB_COMPLETION_INDEX)/N)", s)
	}
	return Shard{i, n}, nil
}

func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.I, s.N) }

// Users returns the shard's part of u: the users at indexes I, I+N, I+2N, …; nil when u has
// fewer than I+1 users.
func (s Shard) Users(u Users) Users {
	if s.N <= 1 {
		return u
	}
	n := (u.Len() - int64(s.I) + int64(s.N) - 1) / int64(s.N)
	if n <= 0 {
		return nil
	}
	return shardUsers{u, s, n}
}

// Count is the shard's part of a total of count logins: those whose index in the whole run is
// I modulo N.
func (s Shard) Count(count int64) int64 {
	if s.N <= 1 || count == 0 {
		return count
	}
	return max((count-int64(s.I)+int64(s.N)-1)/int64(s.N), 0)
}

type shardUsers struct {
	u Users
	s Shard
	n int64
}

func (x shardUsers) Len() int64        { return x.n }
func (x shardUsers) At(i int64) string { return x.u.At(int64(x.s.I) + int64(x.s.N)*(i%x.n)) }
