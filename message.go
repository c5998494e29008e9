package tidings

import "encoding/json"

// Message is one publication to a channel, as it travels from a publisher
// through the Broker to every node's local fan-out. It is encoded for the
// wire once per node, not once per subscriber.
type Message struct {
	// Channel is the full channel name ("user:1001", "post:42").
	Channel string `json:"c"`
	// Event is the event name: "notification", "read", or the name a
	// publisher gave. Empty for a raw publication.
	Event string `json:"e,omitempty"`
	// ID is the cursor of this message as text (a notification's seq, a
	// channel offset), or empty when the message has none.
	ID string `json:"i,omitempty"`
	// Seq is the same cursor as a number (0: none). Within one channel,
	// messages with a Seq are published in increasing Seq order; a
	// connection that resumed from a cursor receives each Seq at most once.
	Seq int64 `json:"s,omitempty"`
	// Data is the event's JSON payload; for a raw publication, the exact
	// text to deliver.
	Data json.RawMessage `json:"d"`
	// Raw marks a raw publication (POST /v1/mesh/publish): Data is
	// delivered byte for byte, with no envelope.
	Raw bool `json:"r,omitempty"`
}

// ServerEvent is the JSON envelope of a non-raw Message on the WebSocket and
// in long-poll answers: {"event":…,"channel":…,"id":…,"data":…}.
type ServerEvent struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel"`
	ID      string          `json:"id,omitempty"`
	Data    json.RawMessage `json:"data"`
}

// Envelope returns the text a WebSocket client receives for m (see
// AppendEnvelope).
func (m *Message) Envelope() []byte { return m.AppendEnvelope(make([]byte, 0, m.EnvelopeSize())) }
