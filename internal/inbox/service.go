// Package inbox is the use-case layer between the edges (HTTP, WebSocket,
// broker ingest) and the adapters (Store, Broker): it stores
// notifications, then publishes them, and keeps read state in sync across
// a user's connections.
package inbox

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/internal/history"
)

// Service sends notifications and manages inboxes.
type Service struct {
	Store  tidings.Store
	Broker tidings.Broker
	Log    *slog.Logger
	Now    func() time.Time
	// History keeps recent events of the namespaces that ask for it; nil:
	// no channel keeps history.
	History *history.Memory

	// queue is set when the store reports commits: notifications are then
	// published by Run in commit (= sequence) order, which is what lets a
	// resuming client drop duplicates by sequence number.
	queue *orderedQueue
}

// New makes a Service. Run must run for notifications to be published when
// the store reports its commits (tidings.CommitObserver).
func New(store tidings.Store, broker tidings.Broker, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	s := &Service{Store: store, Broker: broker, Log: log, Now: time.Now}
	if co, ok := store.(tidings.CommitObserver); ok {
		s.queue = newOrderedQueue()
		co.ObserveCommits(s.queue.push)
	}
	return s
}

// Send stores one notification per user, durably, then publishes each to
// its user's personal channel. It returns the stored notifications; a retry
// with a known idempotency key returns the first ones and publishes nothing.
func (s *Service) Send(ctx context.Context, req SendRequest) ([]tidings.Notification, error) {
	now := s.Now().UTC()
	batch := make([]tidings.NewNotification, len(req.Users))
	var expires *time.Time
	if req.ttl > 0 {
		t := now.Add(req.ttl)
		expires = &t
	}
	for i, u := range req.Users {
		batch[i] = tidings.NewNotification{
			ID: NewID(now), User: u, Type: req.Type, Title: req.Title, Body: req.Body,
			URL: req.URL, Data: req.Data, Group: req.Group,
			IdempotencyKey: req.IdempotencyKey, CreatedAt: now, ExpiresAt: expires,
		}
	}
	stored, err := s.Store.Append(ctx, batch)
	if err != nil {
		return nil, err
	}
	if s.queue != nil {
		return stored, nil // published by Run, in commit order
	}
	for i := range stored {
		if stored[i].ID != batch[i].ID {
			continue // an idempotent retry: published the first time
		}
		s.publishNotification(ctx, &stored[i])
	}
	return stored, nil
}

// NotificationMessage is the message that carries n on its user's personal
// channel: event "notification", the seq as cursor.
func NotificationMessage(n *tidings.Notification) *tidings.Message {
	data := n.AppendJSON(nil)
	return &tidings.Message{Channel: tidings.PersonalChannel(n.User), Event: "notification",
		ID: strconv.FormatInt(n.Seq, 10), Seq: n.Seq, Data: data}
}

func (s *Service) publishNotification(ctx context.Context, n *tidings.Notification) {
	m := NotificationMessage(n)
	if err := s.Broker.Publish(ctx, m); err != nil {
		// Stored, so not lost: clients catch up from their cursor.
		s.Log.Warn("publish notification", "id", n.ID, "user", n.User, "err", err)
	}
}

// Publish sends an ephemeral event to channels.
func (s *Service) Publish(ctx context.Context, req PublishRequest) error {
	for _, ch := range req.Channels {
		m := &tidings.Message{Channel: ch, Event: req.Event, Data: req.Data}
		var err error
		if s.History != nil {
			err = s.History.Publish(ctx, m, s.Broker.Publish)
		} else {
			err = s.Broker.Publish(ctx, m)
		}
		if err != nil {
			return &tidings.Error{Code: tidings.CodeUnavailable, Msg: "broker unavailable", Err: err}
		}
	}
	return nil
}

// PublishRaw sends text verbatim to every subscriber of channel.
func (s *Service) PublishRaw(ctx context.Context, channel, text string) error {
	m := &tidings.Message{Channel: channel, Data: json.RawMessage(text), Raw: true}
	if err := s.Broker.Publish(ctx, m); err != nil {
		return &tidings.Error{Code: tidings.CodeUnavailable, Msg: "broker unavailable", Err: err}
	}
	return nil
}

// MarkRead marks ids (or all) read and tells every connection of the user,
// with the unread count after the change. It returns that count.
func (s *Service) MarkRead(ctx context.Context, user string, ids []string, all bool) (int, error) {
	if !all && len(ids) == 0 {
		return 0, tidings.Errorf(tidings.CodeBadRequest, "ids or all is required")
	}
	if len(ids) > 1000 {
		return 0, tidings.Errorf(tidings.CodeBadRequest, "at most 1000 ids per call")
	}
	changed, unread, err := s.Store.MarkRead(ctx, user, ids, all)
	if err != nil {
		return 0, err
	}
	// The data of a "read" event: {"ids":[…]} or {"all":true}, plus unread.
	ev := map[string]any{"unread": unread}
	if all {
		ev["all"] = true
	} else {
		if changed == nil {
			changed = []string{}
		}
		ev["ids"] = changed
	}
	data, _ := json.Marshal(ev)
	m := &tidings.Message{Channel: tidings.PersonalChannel(user), Event: "read", Data: data}
	if err := s.Broker.Publish(ctx, m); err != nil {
		s.Log.Warn("publish read event", "user", user, "err", err)
	}
	return unread, nil
}

// Delete removes a notification of the user.
func (s *Service) Delete(ctx context.Context, user, id string) error {
	return s.Store.Delete(ctx, user, id)
}

// List returns a page of the user's inbox.
func (s *Service) List(ctx context.Context, user string, q tidings.ListQuery) (tidings.Page, error) {
	return s.Store.List(ctx, user, q)
}

// Unread counts the user's unread notifications.
func (s *Service) Unread(ctx context.Context, user string) (int, error) {
	return s.Store.Unread(ctx, user)
}
