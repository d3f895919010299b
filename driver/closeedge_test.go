package driver

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// closeEdge on a resuming device waits for the server's close, bounded by --timeout; a run that
// stops must not wait that long for a server that never closes.
func TestCloseEdgeStopsWithTheRun(t *testing.T) {
	ca := newTestCA(t, "close CA")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ca.tlsServerConfig(t, "mra.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 1)
	go func() { // handshakes, then neither reads nor closes
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_ = c.(*tls.Conn).Handshake()
		held <- c
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: "mra.example.com", RootCAs: ca.pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if c := <-held; c != nil {
			c.Close()
		}
	}()
	l := &login{c: &Client{cfg: Config{Timeout: 10 * time.Second}}, sessions: tls.NewLRUClientSessionCache(1), conn: conn}
	ctx, cancel := context.WithCancel(context.Background()) // Ctrl-C: a cancel, no deadline
	defer cancel()
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	l.closeEdge(ctx)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("closeEdge took %v after the run was cancelled at 200ms (timeout 10s)", took)
	}
	if l.conn != nil {
		t.Error("connection not dropped")
	}
}
