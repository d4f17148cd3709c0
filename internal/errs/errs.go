// Package errs is vmssd's internal error vocabulary. Every error that reaches
// a client is an *Error with a Kind; the single table in this package maps a
// Kind to the HTTP status ARM uses for it, and Code/Message/Target carry the
// ARM error body. Internal causes are kept for logs (Unwrap) and never sent.
package errs

import (
	"errors"
	"fmt"
	"net/http"
)

// Kind classifies an error; it decides the HTTP status.
type Kind int

// Kinds of client-visible errors.
const (
	Internal           Kind = iota // 500, a bug or an unexpected failure
	Invalid                        // 400, bad input
	Unauthenticated                // 401, missing or bad token
	NotFound                       // 404, the resource does not exist (or may not be seen)
	Conflict                       // 409, not allowed in the current state
	PreconditionFailed             // 412, If-Match / If-None-Match failed
	TooLarge                       // 413, request body too large
	MethodNotAllowed               // 405
	Unavailable                    // 503, temporarily unable (retried by clients)
	Forbidden                      // 403, authenticated but not allowed (a linked resource of another tenant)
)

// statusTable is the one place that maps kinds to HTTP statuses.
var statusTable = map[Kind]int{
	Internal:           http.StatusInternalServerError,
	Invalid:            http.StatusBadRequest,
	Unauthenticated:    http.StatusUnauthorized,
	NotFound:           http.StatusNotFound,
	Conflict:           http.StatusConflict,
	PreconditionFailed: http.StatusPreconditionFailed,
	TooLarge:           http.StatusRequestEntityTooLarge,
	MethodNotAllowed:   http.StatusMethodNotAllowed,
	Unavailable:        http.StatusServiceUnavailable,
	Forbidden:          http.StatusForbidden,
}

// defaultCode is the ARM code used when an error does not name one.
var defaultCode = map[Kind]string{
	Internal:           "InternalServerError",
	Invalid:            "InvalidParameter",
	Unauthenticated:    "AuthenticationFailed",
	NotFound:           "ResourceNotFound",
	Conflict:           "OperationNotAllowed",
	PreconditionFailed: "PreconditionFailed",
	TooLarge:           "RequestEntityTooLarge",
	MethodNotAllowed:   "MethodNotAllowed",
	Unavailable:        "ServiceUnavailable",
	Forbidden:          "AuthorizationFailed",
}

// Error is a client-visible error.
type Error struct {
	Kind    Kind
	Code    string
	Message string
	Target  string
	Details []*Error
	Cause   error
}

func (e *Error) Error() string {
	s := e.ARMCode() + ": " + e.Message
	if e.Target != "" {
		s += " (target " + e.Target + ")"
	}
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Unwrap returns the internal cause.
func (e *Error) Unwrap() error { return e.Cause }

// Status is the HTTP status for the error's kind.
func (e *Error) Status() int { return Status(e.Kind) }

// ARMCode is Code, or the kind's default code.
func (e *Error) ARMCode() string {
	if e.Code != "" {
		return e.Code
	}
	return defaultCode[e.Kind]
}

// Status maps a kind to its HTTP status.
func Status(k Kind) int {
	if s, ok := statusTable[k]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// New builds an error of the given kind and code.
func New(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithTarget sets the target and returns e.
func (e *Error) WithTarget(target string) *Error { e.Target = target; return e }

// Wrap attaches an internal cause.
func (e *Error) Wrap(cause error) *Error { e.Cause = cause; return e }

// InvalidParameter is the common 400.
func InvalidParameter(target, format string, args ...any) *Error {
	return New(Invalid, "InvalidParameter", format, args...).WithTarget(target)
}

// From converts any error to an *Error: an *Error in the chain is returned as
// is, anything else becomes an internal error that hides its cause.
func From(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Kind: Internal, Message: "The server encountered an internal error. Please retry the request.", Cause: err}
}

// IsKind reports whether err carries the kind.
func IsKind(err error, k Kind) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == k
}
