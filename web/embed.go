// Package web holds the demo page that the server serves at "/": a
// notification bell with an unread badge, the user's inbox, mark-read and,
// in development mode, a button that sends the user a test notification.
//
// The page is plain HTML, CSS and one JavaScript module with no build step.
// It uses only relative URLs, so it works unchanged behind a path prefix.
package web

import "embed"

// Static holds the page's files under the directory "static"
// (static/index.html, static/app.js, static/style.css). Serve it with
// fs.Sub(Static, "static").
//
//go:embed static
var Static embed.FS
