package main

import (
	"crypto/tls"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Two edges given the same --session-ticket-keys file resume each other's sessions, as
// replicas behind one Service do; bad files are refused without echoing their content.
func TestSessionTicketKeys(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "ticket-keys")
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	if err := os.WriteFile(keys, []byte("# shared by the replicas\n"+key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir() // one CA for both, as replicas would share certificates
	a := testServer(t, "--data", data, "--session-ticket-keys", keys)
	b := testServer(t, "--data", data, "--session-ticket-keys", keys)
	cache := tls.NewLRUClientSessionCache(4)
	dial := func(s *server) bool {
		https, _, _ := s.addrs()
		c, err := tls.Dial("tcp", https, &tls.Config{ServerName: "mra.example.com", RootCAs: s.caPool(t), ClientSessionCache: cache})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// TLS 1.3 tickets arrive after the handshake: read until the server closes or a
		// deadline passes, so the ticket is processed.
		_ = c.CloseWrite()
		buf := make([]byte, 1)
		_, _ = c.Read(buf)
		return c.ConnectionState().DidResume
	}
	if dial(a) {
		t.Fatal("the first handshake resumed")
	}
	if !dial(b) {
		t.Fatal("a session from one edge did not resume on another with the same ticket keys")
	}
	for _, bad := range []string{"", "not base64!\n", base64.StdEncoding.EncodeToString([]byte("short")) + "\n"} {
		f := filepath.Join(dir, "bad")
		if err := os.WriteFile(f, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := loadTicketKeys(f)
		if err == nil || !strings.Contains(err.Error(), "base64") && !strings.Contains(err.Error(), "no key") {
			t.Errorf("%q: %v", bad, err)
		}
		if bad != "" && strings.Contains(err.Error(), strings.TrimSpace(bad)) {
			t.Errorf("the error echoes the file's content: %v", err)
		}
	}
}
