package domains

import (
	"errors"
	"fmt"
	"net/http"
)

// Kinds of error the Manager returns, each wrapped in an *Error with an HTTP status and a
// sentence for the user. Compare with errors.Is. No message ever quotes key material.
var (
	// Requests about domains.
	ErrBadDomain   = errors.New("domains: bad domain name")                 // 400
	ErrBadRequest  = errors.New("domains: bad request")                     // 400: options, JSON
	ErrNotFound    = errors.New("domains: domain not added")                // 404
	ErrExists      = errors.New("domains: domain already added")            // 409
	ErrNoCert      = errors.New("domains: no certificate loaded")           // 404
	ErrCSRPending  = errors.New("domains: a CSR is already pending")        // 409
	ErrNoCSR       = errors.New("domains: no CSR pending")                  // 404
	ErrTooLarge    = errors.New("domains: request body too large")          // 413
	ErrNoACME      = errors.New("domains: ACME is not configured")          // 501
	ErrACME        = errors.New("domains: ACME refused the domain")         // 502
	ErrStorage     = errors.New("domains: storage failed")                  // 500
	ErrMethod      = errors.New("domains: method not allowed")              // 405
	ErrNoRoute     = errors.New("domains: no such API path")                // 404
	ErrUnavailable = errors.New("domains: the domain is being changed now") // 409

	// Uploads: each wrong upload has its own kind.
	ErrNotPEM        = errors.New("domains: upload is not PEM")                         // 400
	ErrNoCertInPEM   = errors.New("domains: no certificate in the PEM")                 // 400
	ErrBadCert       = errors.New("domains: certificate does not parse")                // 400
	ErrBadKey        = errors.New("domains: key does not parse")                        // 400
	ErrEncryptedKey  = errors.New("domains: key is password-protected")                 // 400
	ErrKeyWithCSR    = errors.New("domains: key uploaded while a CSR is pending")       // 409
	ErrNoKey         = errors.New("domains: no key for the certificate")                // 400
	ErrKeyMismatch   = errors.New("domains: key does not match the certificate")        // 400
	ErrExpired       = errors.New("domains: certificate expired")                       // 400
	ErrNotYetValid   = errors.New("domains: certificate not yet valid")                 // 400
	ErrNamesMismatch = errors.New("domains: certificate names do not cover the domain") // 400
)

// statusOf gives each kind its HTTP status.
var statusOf = map[error]int{
	ErrBadDomain: http.StatusBadRequest, ErrBadRequest: http.StatusBadRequest,
	ErrNotFound: http.StatusNotFound, ErrExists: http.StatusConflict, ErrNoCert: http.StatusNotFound,
	ErrCSRPending: http.StatusConflict, ErrNoCSR: http.StatusNotFound,
	ErrTooLarge: http.StatusRequestEntityTooLarge, ErrNoACME: http.StatusNotImplemented,
	ErrACME: http.StatusBadGateway, ErrStorage: http.StatusInternalServerError,
	ErrMethod: http.StatusMethodNotAllowed, ErrNoRoute: http.StatusNotFound, ErrUnavailable: http.StatusConflict,
	ErrNotPEM: http.StatusBadRequest, ErrNoCertInPEM: http.StatusBadRequest, ErrBadCert: http.StatusBadRequest,
	ErrBadKey: http.StatusBadRequest, ErrEncryptedKey: http.StatusBadRequest, ErrKeyWithCSR: http.StatusConflict,
	ErrNoKey: http.StatusBadRequest, ErrKeyMismatch: http.StatusBadRequest, ErrExpired: http.StatusBadRequest,
	ErrNotYetValid: http.StatusBadRequest, ErrNamesMismatch: http.StatusBadRequest,
}

// Error is what every Manager operation returns on failure: a kind (one of the Err values above,
// for errors.Is), the HTTP status the admin API answers with, and a sentence saying what was
// wrong and what to do.
type Error struct {
	Kind   error
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// Unwrap lets errors.Is(err, ErrNotFound) and the like work.
func (e *Error) Unwrap() error { return e.Kind }

// fail builds an *Error of kind with a formatted sentence.
func fail(kind error, format string, args ...any) *Error {
	st, ok := statusOf[kind]
	if !ok {
		st = http.StatusInternalServerError
	}
	return &Error{Kind: kind, Status: st, Msg: fmt.Sprintf(format, args...)}
}

// storageErr wraps a storage failure; the underlying error names a file, never its content.
func storageErr(op, domain string, err error) *Error {
	return fail(ErrStorage, "could not %s for %s: %v", op, domain, err)
}
