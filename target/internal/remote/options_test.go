package remote

import (
	"testing"

	"github.com/sirupsen/logrus"
)

func TestLog(t *testing.T) {
	given := logrus.New().WithField("k", "v")
	if got := Log(given); got != given {
		t.Errorf("Log(l) = %v, want l itself", got)
	}
	quiet, ok := Log(nil).(*logrus.Logger)
	if !ok {
		t.Fatalf("Log(nil) is a %T, want a *logrus.Logger", Log(nil))
	}
	if quiet.IsLevelEnabled(logrus.InfoLevel) || !quiet.IsLevelEnabled(logrus.WarnLevel) {
		t.Errorf("Log(nil) has level %v, want warn", quiet.GetLevel())
	}
}
