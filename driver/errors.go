package driver

import "errors"

// Errors a caller can test for.
var (
	ErrUnknownStep = errors.New("driver: unknown step")
	ErrBadAddress  = errors.New("driver: bad user address")
	ErrBadResults  = errors.New("driver: bad results file")
)
