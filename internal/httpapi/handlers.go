package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/internal/inbox"
)

func (a *API) sendNotifications(w http.ResponseWriter, r *http.Request) {
	body, err := a.readBody(w, r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	req, err := inbox.DecodeSend(body)
	if err != nil {
		a.writeError(w, err)
		return
	}
	stored, err := a.opt.Inbox.Send(r.Context(), req)
	if err != nil {
		a.writeError(w, err)
		return
	}
	ids := make([]string, len(stored))
	for i := range stored {
		ids[i] = stored[i].ID
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"ids": ids})
}

func (a *API) publish(w http.ResponseWriter, r *http.Request) {
	body, err := a.readBody(w, r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	req, err := inbox.DecodePublish(body)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if err := a.opt.Inbox.Publish(r.Context(), req); err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"result": true})
}

func (a *API) meshPublish(w http.ResponseWriter, r *http.Request) {
	body, err := a.readBody(w, r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	req, err := inbox.DecodeMesh(body)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if err := a.opt.Inbox.PublishRaw(r.Context(), req.C, req.D); err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"result": true})
}

// listResponse is GET /v1/me/notifications.
type listResponse struct {
	Items  []tidings.Notification `json:"items"`
	Next   string                 `json:"next"`
	Unread int                    `json:"unread"`
	// Cursor is the newest seq the user has: go live from it after loading.
	Cursor string `json:"cursor"`
}

func (a *API) listInbox(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var lq tidings.ListQuery
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 500 {
			a.writeError(w, tidings.Errorf(tidings.CodeBadRequest, "limit: must be 1..500"))
			return
		}
		lq.Limit = n
	}
	before, err := parseSeq(q.Get("before"), "before")
	if err != nil {
		a.writeError(w, err)
		return
	}
	lq.BeforeSeq = before
	lq.UnreadOnly = parseBool(q.Get("unread"))
	page, err := a.opt.Inbox.List(r.Context(), identityOf(r).User, lq)
	if err != nil {
		a.writeError(w, err)
		return
	}
	resp := listResponse{Items: page.Items, Unread: page.Unread, Cursor: strconv.FormatInt(page.LastSeq, 10)}
	if resp.Items == nil {
		resp.Items = []tidings.Notification{}
	}
	if page.Next > 0 {
		resp.Next = strconv.FormatInt(page.Next, 10)
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *API) unread(w http.ResponseWriter, r *http.Request) {
	n, err := a.opt.Inbox.Unread(r.Context(), identityOf(r).User)
	if err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"count": n})
}

func (a *API) markRead(w http.ResponseWriter, r *http.Request) {
	body, err := a.readBody(w, r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	var req struct {
		IDs []string `json:"ids"`
		All bool     `json:"all"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		a.writeError(w, &tidings.Error{Code: tidings.CodeBadRequest, Msg: "malformed JSON: expected {\"ids\":[…]} or {\"all\":true}", Err: err})
		return
	}
	n, err := a.opt.Inbox.MarkRead(r.Context(), identityOf(r).User, req.IDs, req.All)
	if err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"unread": n})
}

func (a *API) deleteNotification(w http.ResponseWriter, r *http.Request) {
	if err := a.opt.Inbox.Delete(r.Context(), identityOf(r).User, r.PathValue("id")); err != nil {
		a.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) devOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.opt.Dev {
			a.writeError(w, tidings.Errorf(tidings.CodeNotFound, "dev mode is off (start with --dev or TIDINGS_DEV=true)"))
			return
		}
		h(w, r)
	}
}

func (a *API) devConfig(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]bool{"dev": a.opt.Dev})
}

func (a *API) devToken(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	if user == "" || !tidings.ValidChannel(tidings.PersonalChannel(user)) {
		a.writeError(w, tidings.Errorf(tidings.CodeBadRequest, "user: a user id is required"))
		return
	}
	tok, err := a.opt.MintDev(user)
	if err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": tok, "user": user})
}

func (a *API) devNotify(w http.ResponseWriter, r *http.Request) {
	body, err := a.readBody(w, r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	var in struct{ Title, Body string }
	_ = json.Unmarshal(body, &in)
	if in.Title == "" {
		in.Title = "Test notification"
	}
	req := inbox.SendRequest{Users: []string{identityOf(r).User}, Type: "test", Title: in.Title,
		Body: in.Body, Data: json.RawMessage(`{"sent_at":"` + time.Now().UTC().Format(time.RFC3339) + `"}`)}
	if err := req.Validate(); err != nil {
		a.writeError(w, err)
		return
	}
	stored, err := a.opt.Inbox.Send(r.Context(), req)
	if err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"ids": []string{stored[0].ID}})
}
