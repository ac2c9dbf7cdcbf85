package remote

import "github.com/sirupsen/logrus"

// Log returns l, or when it is nil a logger on stderr that shows only
// warnings and errors: a caller that passes no logger still hears of what
// needs the user (a password taken from the URL, a temp file left behind)
// without the per-request debug lines.
func Log(l logrus.FieldLogger) logrus.FieldLogger {
	if l != nil {
		return l
	}
	quiet := logrus.New()
	quiet.SetLevel(logrus.WarnLevel)
	return quiet
}
