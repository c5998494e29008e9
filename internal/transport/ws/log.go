package ws

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/lesismal/nbio/logging"
)

// nbioLogger sends the poller library's log lines to slog, one level down
// (its informational lines are start/stop chatter).
type nbioLogger struct{ l *slog.Logger }

func (n nbioLogger) SetLevel(int) {}
func (n nbioLogger) Debug(format string, v ...any) {
	n.l.Debug(fmt.Sprintf(format, v...), "component", "poller")
}
func (n nbioLogger) Info(format string, v ...any) {
	n.l.Debug(fmt.Sprintf(format, v...), "component", "poller")
}
func (n nbioLogger) Warn(format string, v ...any) {
	n.l.Warn(fmt.Sprintf(format, v...), "component", "poller")
}
func (n nbioLogger) Error(format string, v ...any) {
	n.l.Error(fmt.Sprintf(format, v...), "component", "poller")
}

var setLoggerOnce sync.Once

// installLogger routes the poller library's global logger to l; the first
// server of the process wins (the library has one global logger).
func installLogger(l *slog.Logger) {
	setLoggerOnce.Do(func() { logging.SetLogger(nbioLogger{l}) })
}
