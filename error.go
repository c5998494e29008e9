package tidings

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Code is a stable error code, sent to clients as {"code":N,"msg":"..."}
// on the WebSocket and over HTTP. The table is in docs/PROTOCOL.md; codes
// are never renumbered, only added.
type Code int

const (
	CodeNotAuthenticated Code = 1  // missing, invalid or expired credentials
	CodeBadRequest       Code = 2  // malformed frame or body, invalid field
	CodeForbidden        Code = 3  // valid credentials without the right
	CodeNotFound         Code = 4  // no such item (for this user)
	CodeTooLarge         Code = 5  // frame or body over the configured limit
	CodeRateLimited      Code = 6  // too many requests
	CodeUnknownOp        Code = 7  // frame with an op the server does not know
	CodeTooManySubs      Code = 8  // subscription limit per connection reached
	CodeMethodNotAllowed Code = 9  // HTTP method not allowed on this path
	CodeInternal         Code = 10 // the server failed; retry later
	CodeUnavailable      Code = 11 // not ready, draining or a backend is down
)

var codeText = map[Code]string{
	CodeNotAuthenticated: "not authenticated",
	CodeBadRequest:       "bad request",
	CodeForbidden:        "forbidden",
	CodeNotFound:         "not found",
	CodeTooLarge:         "too large",
	CodeRateLimited:      "rate limited",
	CodeUnknownOp:        "unknown op",
	CodeTooManySubs:      "too many subscriptions",
	CodeMethodNotAllowed: "method not allowed",
	CodeInternal:         "internal error",
	CodeUnavailable:      "unavailable",
}

var codeStatus = map[Code]int{
	CodeNotAuthenticated: http.StatusUnauthorized,
	CodeBadRequest:       http.StatusBadRequest,
	CodeForbidden:        http.StatusForbidden,
	CodeNotFound:         http.StatusNotFound,
	CodeTooLarge:         http.StatusRequestEntityTooLarge,
	CodeRateLimited:      http.StatusTooManyRequests,
	CodeUnknownOp:        http.StatusBadRequest,
	CodeTooManySubs:      http.StatusBadRequest,
	CodeMethodNotAllowed: http.StatusMethodNotAllowed,
	CodeInternal:         http.StatusInternalServerError,
	CodeUnavailable:      http.StatusServiceUnavailable,
}

// String is the short name of a code ("not authenticated").
func (c Code) String() string {
	if s, ok := codeText[c]; ok {
		return s
	}
	return fmt.Sprintf("code %d", int(c))
}

// HTTPStatus is the status an HTTP answer with this code carries.
func (c Code) HTTPStatus() int {
	if s, ok := codeStatus[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Error is the one error type that crosses package boundaries with a code.
// Adapters wrap causes with %w; the edges (HTTP, WebSocket) translate it
// with errors.As.
type Error struct {
	Code Code   `json:"code"`
	Msg  string `json:"msg"`
	Err  error  `json:"-"` // the cause, for logs; never sent
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf makes an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// ErrorOf returns the *Error in err's chain, or an internal error that hides
// err's text from clients.
func ErrorOf(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Msg: "internal error", Err: err}
}

// ErrNotFound is returned by a Store when an item does not exist for the
// user asking; the edges answer 404.
var ErrNotFound = &Error{Code: CodeNotFound, Msg: "notification not found"}

// WriteHTTPError answers an HTTP request with err as {"code","msg"} and
// the code's status (a 401 also names the Bearer scheme).
func WriteHTTPError(w http.ResponseWriter, err error) {
	e := ErrorOf(err)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if e.Code == CodeNotAuthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tidings"`)
	}
	w.WriteHeader(e.Code.HTTPStatus())
	_ = json.NewEncoder(w).Encode(e)
}
