package proxy

import (
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"
)

// baseTLSConfig builds the settings the three listeners share. Session tickets are on; without
// configured keys one random key is made here, so a ticket from one listener resumes on another.
func baseTLSConfig(c *Config) (*tls.Config, error) {
	tc := &tls.Config{
		GetCertificate:   c.GetCertificate,
		MinVersion:       c.MinVersion,
		MaxVersion:       c.MaxVersion,
		CurvePreferences: c.CurvePreferences,
	}
	keys := c.SessionTicketKeys
	if len(keys) == 0 {
		keys = make([][32]byte, 1)
		if _, err := rand.Read(keys[0][:]); err != nil {
			return nil, fmt.Errorf("proxy: session ticket key: %w", err)
		}
	}
	tc.SetSessionTicketKeys(keys)
	return tc, nil
}

// ACMETLS1Protocol is the ALPN protocol of ACME TLS-ALPN-01 validation (RFC 8737).
const ACMETLS1Protocol = "acme-tls/1"

// listenerTLSConfig is the per-listener variant of base, built once at New. The HTTPS listener
// also answers ACME TLS-ALPN-01 validation when challenge is set.
func listenerTLSConfig(base *tls.Config, idx int, challenge func(*tls.ClientHelloInfo) (*tls.Certificate, bool)) *tls.Config {
	tc := base.Clone()
	if idx == lnHTTPS {
		tc.NextProtos = []string{"http/1.1"}
		if challenge != nil {
			tc.NextProtos = append(tc.NextProtos, ACMETLS1Protocol)
			get := base.GetCertificate
			tc.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
				if isACMEHello(hello) {
					if c, ok := challenge(hello); ok {
						return c, nil
					}
					return nil, fmt.Errorf("proxy: no ACME TLS-ALPN-01 challenge pending for %q", hello.ServerName)
				}
				return get(hello)
			}
		}
	}
	return tc
}

// isACMEHello reports whether a ClientHello is an ACME validator's: it offers acme-tls/1 alone.
func isACMEHello(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == ACMETLS1Protocol
}

// handshake runs the server side of a TLS handshake on raw, bounded by the handshake timeout,
// and records it. The deadline is cleared on success. The duration covers the handshake only
// (for XMPP: after <proceed/>).
func (e *Edge) handshake(sc *serverConn, raw net.Conn) (*tls.Conn, error) {
	start := time.Now()
	raw.SetDeadline(start.Add(e.cfg.HandshakeTimeout))
	tc := tls.Server(raw, sc.ln.tls)
	err := tc.Handshake()
	var version uint16
	var resumed bool
	if err == nil {
		st := tc.ConnectionState()
		version, resumed = st.Version, st.DidResume
	}
	sc.ln.m.handshakeDone(time.Since(start).Seconds(), version, resumed, err)
	if err != nil {
		if ce := e.log.Check(zap.DebugLevel, "tls handshake failed"); ce != nil {
			ce.Write(zap.String("listener", listenerNames[sc.ln.idx]), zap.Stringer("remote", raw.RemoteAddr()), zap.Error(err))
		}
		return nil, err
	}
	raw.SetDeadline(time.Time{})
	return tc, nil
}

// isTimeout reports whether err is a deadline expiring.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
