package ws

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/tidings/tidings"
)

// ClientFrame is one frame a client sends: a JSON object with an "op"
// (or seed 001's {"type":"heartbeat"}), or the bare text "ping".
type ClientFrame struct {
	Op      string          `json:"op"`
	Type    string          `json:"type"`
	Ref     json.RawMessage `json:"ref"`
	Token   string          `json:"token"`
	Channel string          `json:"channel"`
	Since   json.RawMessage `json:"since"`
	IDs     []string        `json:"ids"`
	All     bool            `json:"all"`
}

// Ops a client may send.
const (
	OpAuth        = "auth"
	OpSubscribe   = "subscribe"
	OpUnsubscribe = "unsubscribe"
	OpRead        = "read"
	OpPing        = "ping"
	OpBarePing    = "bare-ping" // the text frame "ping"
	OpHeartbeat   = "heartbeat" // seed 001: {"type":"heartbeat"}
)

// DecodeFrame parses one text frame. A frame that is not a JSON object, or
// whose fields have the wrong type, is a *tidings.Error with CodeBadRequest;
// the Ref is kept when it could be read, so the error reply can echo it.
func DecodeFrame(b []byte) (ClientFrame, error) {
	var f ClientFrame
	t := bytes.TrimSpace(b)
	if string(t) == "ping" {
		f.Op = OpBarePing
		return f, nil
	}
	if len(t) == 0 || t[0] != '{' {
		return f, tidings.Errorf(tidings.CodeBadRequest, "bad frame: a JSON object is expected")
	}
	if err := json.Unmarshal(t, &f); err != nil {
		// Try to recover the ref alone, for the error reply.
		var r struct {
			Ref json.RawMessage `json:"ref"`
		}
		if json.Unmarshal(t, &r) == nil && validRef(r.Ref) {
			f.Ref = r.Ref
		} else {
			f.Ref = nil
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return f, tidings.Errorf(tidings.CodeBadRequest, "bad frame: field %s has the wrong type", te.Field)
		}
		return f, tidings.Errorf(tidings.CodeBadRequest, "bad frame: malformed JSON")
	}
	if !validRef(f.Ref) {
		f.Ref = nil
		return f, tidings.Errorf(tidings.CodeBadRequest, "bad frame: ref must be a string or a number")
	}
	if f.Op == "" && f.Type == "heartbeat" {
		f.Op = OpHeartbeat
	}
	if f.Op == "" {
		return f, tidings.Errorf(tidings.CodeBadRequest, "bad frame: op is required")
	}
	return f, nil
}

func validRef(r json.RawMessage) bool {
	if len(r) == 0 || string(r) == "null" {
		return true
	}
	switch r[0] {
	case '"':
		var s string
		return json.Unmarshal(r, &s) == nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		_, err := strconv.ParseFloat(string(r), 64)
		return err == nil
	}
	return false
}

// SinceSeq reads a "since" cursor for the personal channel: a JSON number,
// or a decimal string. ok is false when since is absent.
func (f *ClientFrame) SinceSeq() (seq int64, ok bool, err error) {
	if len(f.Since) == 0 || string(f.Since) == "null" {
		return 0, false, nil
	}
	s := string(f.Since)
	if s[0] == '"' {
		if err := json.Unmarshal(f.Since, &s); err != nil {
			return 0, false, tidings.Errorf(tidings.CodeBadRequest, "bad frame: since is not a cursor")
		}
	}
	n, perr := strconv.ParseInt(s, 10, 64)
	if perr != nil || n < 0 {
		return 0, false, tidings.Errorf(tidings.CodeBadRequest, "bad frame: since is not a cursor")
	}
	return n, true, nil
}

// reply is a server answer to a client frame: result or code, never event.
type reply struct {
	Result *bool           `json:"result,omitempty"`
	Code   tidings.Code    `json:"code,omitempty"`
	Msg    string          `json:"msg,omitempty"`
	Unread *int            `json:"unread,omitempty"`
	Ref    json.RawMessage `json:"ref,omitempty"`
}

var yes = true

func okReply(ref json.RawMessage) []byte {
	b, _ := json.Marshal(reply{Result: &yes, Ref: ref})
	return b
}

func errReply(ref json.RawMessage, err error) []byte {
	e := tidings.ErrorOf(err)
	b, _ := json.Marshal(reply{Code: e.Code, Msg: e.Msg, Ref: ref})
	return b
}

func pongReply(ref json.RawMessage) []byte {
	b, _ := json.Marshal(struct {
		Op  string          `json:"op"`
		Ref json.RawMessage `json:"ref,omitempty"`
	}{"pong", ref})
	return b
}

// heartbeatReply is seed 001's answer to {"type":"heartbeat"}.
var heartbeatReply = []byte(`{"type":"heartbeat","content":{"body":"","meta_data":""}}`)
