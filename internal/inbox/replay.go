package inbox

import (
	"context"
	"strings"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/internal/history"
)

// MaxReplay bounds one catch-up: past it the client is told (a gap notice)
// to load its inbox over HTTP instead.
const MaxReplay = 10000

const replayPage = 500

// Replay returns what channel published after the cursor after, oldest
// first, for a client that resumes; a gap notice comes first when part of
// it is no longer available. A personal channel replays the user's stored
// notifications; a topic channel its history, if its namespace keeps one.
// The caller has checked that the client may read channel.
func (s *Service) Replay(ctx context.Context, channel string, after int64) ([]*tidings.Message, error) {
	if user, ok := strings.CutPrefix(channel, tidings.PersonalPrefix); ok {
		return s.replayUser(ctx, user, after)
	}
	if s.History == nil {
		return []*tidings.Message{history.Gap(channel, after, 0, "this channel keeps no history")}, nil
	}
	return s.History.Replay(ctx, channel, after)
}

func (s *Service) replayUser(ctx context.Context, user string, after int64) ([]*tidings.Message, error) {
	var out []*tidings.Message
	if after > 0 {
		page, err := s.Store.List(ctx, user, tidings.ListQuery{Limit: 1})
		if err != nil {
			return nil, err
		}
		if after > page.LastSeq {
			// A cursor this server never gave (restored or reset data):
			// say so and replay from the start.
			out = append(out, history.Gap(tidings.PersonalChannel(user), after, 1, "cursor is ahead of this inbox"))
			after = 0
		}
	}
	for {
		ns, err := s.Store.Since(ctx, user, after, replayPage)
		if err != nil {
			return nil, err
		}
		for i := range ns {
			out = append(out, NotificationMessage(&ns[i]))
		}
		if len(ns) < replayPage {
			return out, nil
		}
		after = ns[len(ns)-1].Seq
		if len(out) >= MaxReplay {
			return append(out, history.Gap(tidings.PersonalChannel(user), after, after+1,
				"too many notifications missed; load the inbox over HTTP")), nil
		}
	}
}

// Cursor is the newest cursor of channel: where a client that starts "from
// now" stands (0 when there is none).
func (s *Service) Cursor(ctx context.Context, channel string) (int64, error) {
	if user, ok := strings.CutPrefix(channel, tidings.PersonalPrefix); ok {
		page, err := s.Store.List(ctx, user, tidings.ListQuery{Limit: 1})
		return page.LastSeq, err
	}
	if s.History == nil {
		return 0, nil
	}
	return s.History.Last(channel), nil
}
