package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"os"
	"strings"
)

// loadTicketKeys reads --session-ticket-keys: one base64 key of 32 bytes per line (blank lines
// and # comments skipped); the first encrypts new tickets, all decrypt. Replicas given the same
// file (a Kubernetes Secret) resume each other's sessions. Make one with
// 'head -c 32 /dev/urandom | base64'.
func loadTicketKeys(path string) ([][32]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--session-ticket-keys: %v", err)
	}
	var keys [][32]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			raw, err = base64.RawStdEncoding.DecodeString(line)
		}
		if err != nil || len(raw) != 32 {
			// The line is a secret: say where and what, never what it holds.
			return nil, usagef("--session-ticket-keys %s line %d: want 32 bytes in base64 (make one with 'head -c 32 /dev/urandom | base64')", path, n)
		}
		var k [32]byte
		copy(k[:], raw)
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, usagef("--session-ticket-keys %s holds no key: want one base64 line of 32 bytes or more lines (the first encrypts)", path)
	}
	return keys, nil
}

// ticketKeysHelp is the flag's help text.
const ticketKeysHelp = "`FILE` of session-ticket keys, one base64 line of 32 bytes each, the first encrypting: replicas sharing it resume each other's TLS sessions (default: a random key per process)"
