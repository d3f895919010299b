package acme

import "time"

// State is where a domain's ACME management stands.
type State string

// The states of a domain, as the domain list shows them.
const (
	StateUnmanaged State = "unmanaged" // never enabled on this Manager
	StateQueued    State = "queued"    // waiting for a free worker
	StateOrdering  State = "ordering"  // loading, ordering or renewing now
	StateValid     State = "valid"     // a certificate is deployed (LastError may tell of a failed renewal)
	StateFailed    State = "failed"    // no certificate, and the last attempt failed (LastError); retried later
	StateDisabled  State = "disabled"  // management stopped; storage kept
)

// Status is one domain's ACME state, as the domain list and the API report it.
type Status struct {
	Domain    string    `json:"domain"`
	Names     []string  `json:"names,omitempty"` // the names of the current certificate
	State     State     `json:"state"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	Serial    string    `json:"serial,omitempty"` // hex
	Issuer    string    `json:"issuer,omitempty"` // the issuing CA's common name
	Challenge string    `json:"challenge,omitempty"`
	Orders    int       `json:"orders"` // ACME orders this Manager placed for the domain
	LastError string    `json:"last_error,omitempty"`
	NextRetry time.Time `json:"next_retry,omitzero"` // when a failed domain is tried again
	Updated   time.Time `json:"updated"`
}
