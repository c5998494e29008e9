package inbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tidings/tidings"
)

// Limits on what a publisher may send in one notification.
const (
	MaxUsers     = 1000
	MaxUserLen   = 250 // so that "user:<id>" is a valid channel name
	MaxTypeLen   = 128
	MaxTitleLen  = 1024
	MaxBodyLen   = 16 << 10
	MaxURLLen    = 4096
	MaxGroupLen  = 255
	MaxKeyLen    = 255
	MaxDataBytes = 64 << 10
	DefaultType  = "message"
)

// SendRequest is the body of POST /v1/notifications (and of a broker
// message that carries a notification).
type SendRequest struct {
	Users          []string        `json:"users"`
	Type           string          `json:"type"`
	Title          string          `json:"title"`
	Body           string          `json:"body"`
	URL            string          `json:"url"`
	Data           json.RawMessage `json:"data"`
	Group          string          `json:"group"`
	IdempotencyKey string          `json:"idempotency_key"`
	TTL            string          `json:"ttl"`

	ttl time.Duration
}

// DecodeSend parses and validates a notification body. Every error is a
// *tidings.Error with CodeBadRequest naming the field.
func DecodeSend(body []byte) (SendRequest, error) {
	var req SendRequest
	if err := decodeObject(body, &req); err != nil {
		return req, err
	}
	return req, req.Validate()
}

// Validate checks every field and fills defaults (type).
func (r *SendRequest) Validate() error {
	var probs []string
	if len(r.Users) == 0 {
		probs = append(probs, "users: at least one user is required")
	}
	if len(r.Users) > MaxUsers {
		probs = append(probs, fmt.Sprintf("users: at most %d users per request", MaxUsers))
	}
	for _, u := range r.Users {
		if !validUser(u) {
			probs = append(probs, fmt.Sprintf("users: %q is not a valid user id", u))
		}
	}
	r.Users = dedupe(r.Users)
	if r.Type == "" {
		r.Type = DefaultType
	}
	probs = checkLen(probs, "type", r.Type, MaxTypeLen)
	probs = checkLen(probs, "title", r.Title, MaxTitleLen)
	probs = checkLen(probs, "body", r.Body, MaxBodyLen)
	probs = checkLen(probs, "url", r.URL, MaxURLLen)
	probs = checkLen(probs, "group", r.Group, MaxGroupLen)
	probs = checkLen(probs, "idempotency_key", r.IdempotencyKey, MaxKeyLen)
	if len(r.Data) > MaxDataBytes {
		probs = append(probs, fmt.Sprintf("data: larger than %d bytes", MaxDataBytes))
	}
	if bytes.Equal(bytes.TrimSpace(r.Data), []byte("null")) {
		r.Data = nil
	}
	r.Data = tidings.CompactJSON(r.Data)
	if r.TTL != "" {
		d, err := ParseDuration(r.TTL)
		if err != nil || d <= 0 {
			probs = append(probs, fmt.Sprintf("ttl: %q is not a positive duration such as \"72h\"", r.TTL))
		}
		r.ttl = d
	}
	if len(probs) > 0 {
		return tidings.Errorf(tidings.CodeBadRequest, "%s", strings.Join(probs, "; "))
	}
	return nil
}

// PublishRequest is the body of POST /v1/publish.
type PublishRequest struct {
	Channel  string          `json:"channel"`
	Channels []string        `json:"channels"`
	Event    string          `json:"event"`
	Data     json.RawMessage `json:"data"`
}

// DecodePublish parses and validates an event body.
func DecodePublish(body []byte) (PublishRequest, error) {
	var req PublishRequest
	if err := decodeObject(body, &req); err != nil {
		return req, err
	}
	var probs []string
	if req.Channel != "" {
		req.Channels = append([]string{req.Channel}, req.Channels...)
	}
	req.Channels = dedupe(req.Channels)
	if len(req.Channels) == 0 {
		probs = append(probs, "channel: a channel (or channels) is required")
	}
	if len(req.Channels) > MaxUsers {
		probs = append(probs, fmt.Sprintf("channels: at most %d per request", MaxUsers))
	}
	for _, c := range req.Channels {
		if !tidings.ValidChannel(c) || c == tidings.UserAlias {
			probs = append(probs, fmt.Sprintf("channels: %q is not a valid channel name", c))
		}
	}
	if req.Event == "" {
		req.Event = DefaultType
	}
	probs = checkLen(probs, "event", req.Event, MaxTypeLen)
	if strings.ContainsAny(req.Event, "\r\n") {
		probs = append(probs, "event: must be one line")
	}
	if len(req.Data) == 0 {
		req.Data = json.RawMessage("null")
	}
	req.Data = tidings.CompactJSON(req.Data)
	if len(probs) > 0 {
		return req, tidings.Errorf(tidings.CodeBadRequest, "%s", strings.Join(probs, "; "))
	}
	return req, nil
}

// MeshRequest is the body of POST /v1/mesh/publish: {"c":channel,"d":text}.
type MeshRequest struct {
	C string `json:"c"`
	D string `json:"d"`
}

// DecodeMesh parses and validates a raw publication.
func DecodeMesh(body []byte) (MeshRequest, error) {
	var req MeshRequest
	if err := decodeObject(body, &req); err != nil {
		return req, err
	}
	if !tidings.ValidChannel(req.C) || req.C == tidings.UserAlias {
		return req, tidings.Errorf(tidings.CodeBadRequest, "c: %q is not a valid channel name", req.C)
	}
	return req, nil
}

// decodeObject decodes one JSON object and nothing after it, with errors a
// publisher can act on.
func decodeObject(body []byte, v any) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return tidings.Errorf(tidings.CodeBadRequest, "empty body: a JSON object is required")
	}
	if trimmed[0] != '{' {
		return tidings.Errorf(tidings.CodeBadRequest, "body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return tidings.Errorf(tidings.CodeBadRequest, "%s: must be %s", te.Field, kindName(te.Type.Kind().String()))
		}
		return &tidings.Error{Code: tidings.CodeBadRequest, Msg: "malformed JSON: " + err.Error(), Err: err}
	}
	if _, err := dec.Token(); err != io.EOF {
		return tidings.Errorf(tidings.CodeBadRequest, "malformed JSON: data after the object")
	}
	return nil
}

func kindName(k string) string {
	switch k {
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	case "int64", "int", "float64":
		return "a number"
	}
	return "a " + k
}

func checkLen(probs []string, field, v string, max int) []string {
	if len(v) > max {
		return append(probs, fmt.Sprintf("%s: longer than %d bytes", field, max))
	}
	if !utf8.ValidString(v) {
		return append(probs, field+": not valid UTF-8")
	}
	return probs
}

func validUser(u string) bool {
	if u == "" || len(u) > MaxUserLen || !utf8.ValidString(u) {
		return false
	}
	for _, r := range u {
		if r <= ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

// ParseDuration takes a Go duration ("72h", "25s") or plain seconds ("25").
func ParseDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(n * float64(time.Second)), nil
	}
	return time.ParseDuration(s)
}

// dedupe keeps the first of each value, in order.
func dedupe(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := in[:0:0]
	for _, v := range in {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
