package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tidings/tidings"
)

// maxWebhookAnswer bounds the answer body read from a webhook: the answer
// is a few fields, and a broken backend must not make the server buffer
// an endless body.
const maxWebhookAnswer = 64 << 10

// maxExactFloat is the largest integer a float64 holds exactly (2^53): a uid
// given as 1001.0 or 1e3 is accepted only in the range where its decimal
// text is unambiguous.
const maxExactFloat = 1 << 53

// webhook asks the app backend who a token belongs to (seed 003):
// POST {"token":"…"} → 2xx {"uid":…}.
type webhook struct {
	url    string
	client *http.Client
	now    func() time.Time
}

func newWebhook(rawURL string, client *http.Client) (*webhook, error) {
	if err := checkHTTPURL(rawURL); err != nil {
		return nil, err
	}
	return &webhook{url: rawURL, client: client, now: time.Now}, nil
}

// checkHTTPURL refuses what cannot be an app backend endpoint, so a typo in
// the configuration fails at start rather than at the first login.
func checkHTTPURL(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("URL %q is not an absolute http(s) URL", rawURL)
	}
	return nil
}

// check asks the webhook about token. A refusal is CodeNotAuthenticated; a
// webhook that cannot be reached is CodeUnavailable, because the token may
// well be good and the client should retry rather than ask its user to log
// in again.
func (w *webhook) check(ctx context.Context, token string) (tidings.Identity, *tidings.Error) {
	body, err := json.Marshal(struct {
		Token string `json:"token"`
	}{token})
	if err != nil { // cannot happen for a string; kept for the type's sake
		return tidings.Identity{}, refuse("invalid token", err)
	}
	status, answer, err := postJSON(ctx, w.client, w.url, body)
	if err != nil {
		return tidings.Identity{}, &tidings.Error{Code: tidings.CodeUnavailable, Msg: "auth webhook unavailable", Err: err}
	}
	if status < 200 || status > 299 {
		return tidings.Identity{}, refuse("webhook refused token", fmt.Errorf("webhook answered status %d", status))
	}
	if len(answer) > maxWebhookAnswer {
		return tidings.Identity{}, refuse("webhook refused token", fmt.Errorf("webhook answer longer than %d bytes", maxWebhookAnswer))
	}
	id, err := decodeWebhookAnswer(answer, w.now())
	if err != nil {
		var te *tidings.Error
		if errors.As(err, &te) {
			return tidings.Identity{}, te
		}
		return tidings.Identity{}, refuse("webhook refused token", err)
	}
	return id, nil
}

// postJSON posts body and returns the status and at most
// maxWebhookAnswer+1 bytes of the answer, so the caller can tell an answer
// that is too long. Only a failure to talk to the server is an error.
func postJSON(ctx context.Context, client *http.Client, url string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxWebhookAnswer+1))
	if err != nil {
		return 0, nil, fmt.Errorf("reading answer: %w", err)
	}
	return resp.StatusCode, answer, nil
}

// webhookAnswer is the 2xx answer of the auth webhook. uid is kept raw
// because apps send it as a string or as a number (seed 003 answers
// {"uid":1001}).
type webhookAnswer struct {
	UID       json.RawMessage `json:"uid"`
	Channels  []string        `json:"channels"`
	ExpiresAt *json.Number    `json:"expires_at"`
}

// decodeWebhookAnswer reads a 2xx answer body into an identity. It refuses
// an answer without a usable uid, and one whose expires_at (unix seconds)
// is not after now.
func decodeWebhookAnswer(body []byte, now time.Time) (tidings.Identity, error) {
	var a webhookAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return tidings.Identity{}, fmt.Errorf("webhook answer is not the expected JSON: %w", err)
	}
	user, err := uidText(a.UID)
	if err != nil {
		return tidings.Identity{}, err
	}
	if !validUser(user) {
		return tidings.Identity{}, fmt.Errorf("webhook uid %q cannot be a user id", user)
	}
	id := tidings.Identity{User: user}
	for _, c := range a.Channels {
		if c != "" {
			id.Channels = append(id.Channels, c)
		}
	}
	if a.ExpiresAt != nil {
		exp, err := unixTime(*a.ExpiresAt)
		if err != nil {
			return tidings.Identity{}, fmt.Errorf("webhook expires_at: %w", err)
		}
		if !exp.IsZero() {
			if !now.Before(exp) {
				return tidings.Identity{}, refuse("token expired", fmt.Errorf("webhook expires_at %v", exp))
			}
			id.Expires = exp
		}
	}
	return id, nil
}

// uidText is the user id a JSON uid stands for: a string as is, a number as
// its decimal integer text (1001 → "1001", 1.0 and 1e3 too, 1.5 refused).
func uidText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", errors.New("webhook answer has no uid")
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("webhook uid: %w", err)
		}
		return s, nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return integerText(string(raw))
	}
	return "", fmt.Errorf("webhook uid %s is neither a string nor a number", raw)
}

// integerText returns the decimal text of an integral JSON number.
// Digits-only numbers are kept digit for digit, whatever their size, so a
// 64-bit id never loses precision; a fraction or exponent is accepted only
// when the value is an exact integer below 2^53.
func integerText(num string) (string, error) {
	if !strings.ContainsAny(num, ".eE") {
		if num == "-0" {
			return "0", nil
		}
		return num, nil // valid JSON already: -?(0|[1-9][0-9]*)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > maxExactFloat {
		return "", fmt.Errorf("webhook uid %s is not an integer", num)
	}
	return strconv.FormatInt(int64(f), 10), nil
}

// unixTime reads unix seconds, with an optional fraction; 0 means no
// expiry.
func unixTime(n json.Number) (time.Time, error) {
	if i, err := n.Int64(); err == nil {
		if i == 0 {
			return time.Time{}, nil
		}
		return time.Unix(i, 0), nil
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.Abs(f) > 1<<62/1e9 {
		return time.Time{}, fmt.Errorf("%q is not a unix time", n.String())
	}
	if f == 0 {
		return time.Time{}, nil
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}
