package driver

import (
	"fmt"
	"testing"
)

// The shards of a run take every user exactly once between them, and counts that add up.
func TestShardPartition(t *testing.T) {
	for _, total := range []int{1, 2, 7, 30, 31} {
		var users UserList
		for k := range total {
			users = append(users, fmt.Sprintf("user%d@example.com", k))
		}
		for _, n := range []int{1, 2, 3, 8} {
			seen := map[string]int{}
			var count int64
			for i := range n {
				s := Shard{i, n}
				count += s.Count(100)
				part := s.Users(users)
				if part == nil {
					if i < total {
						t.Fatalf("%d users, shard %v: no users", total, s)
					}
					continue
				}
				for j := range part.Len() {
					seen[part.At(j)]++
				}
			}
			if len(seen) != total || count != 100 {
				t.Errorf("%d users in %d shards: %d distinct users seen, counts add to %d", total, n, len(seen), count)
			}
			for u, k := range seen {
				if k != 1 {
					t.Errorf("%d users in %d shards: %s in %d shards", total, n, u, k)
				}
			}
		}
	}
	for _, bad := range []string{"3/3", "-1/2", "1", "a/b", "0/0"} {
		if _, err := ParseShard(bad); err == nil {
			t.Errorf("ParseShard(%q) accepted", bad)
		}
	}
}
