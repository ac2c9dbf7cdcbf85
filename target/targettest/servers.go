package targettest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// NeedEnv returns the values of the named environment variables, which
// scripts/test-servers.sh exports for its servers. When any is empty the
// test is skipped, or fails when CI=true: in CI a suite that skips in
// silence hides regressions.
func NeedEnv(t testing.TB, names ...string) []string {
	t.Helper()
	vals := make([]string, len(names))
	var missing []string
	for i, n := range names {
		vals[i] = os.Getenv(n)
		if vals[i] == "" {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return vals
	}
	vars := strings.Join(missing, ", ")
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not set: a missing server is a failure in CI (run scripts/test-servers.sh up, then eval \"$(scripts/test-servers.sh env)\")", vars)
	}
	t.Skipf("%s not set; start the servers with scripts/test-servers.sh up", vars)
	return nil
}

// RealServer reads what scripts/test-servers.sh exports for one server:
// <prefix>_URL, FTPSYNC_TEST_PASSWORD (both needed, see NeedEnv) and
// <prefix>_ROOT, the server's folder on this machine, which may be empty
// when the server runs elsewhere.
func RealServer(t testing.TB, prefix string) (url, root, password string) {
	t.Helper()
	v := NeedEnv(t, prefix+"_URL", "FTPSYNC_TEST_PASSWORD")
	return v[0], os.Getenv(prefix + "_ROOT"), v[1]
}

// caseName is a fresh folder name for one test case, so that cases sharing
// a server never see each other's files.
func caseName() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "case-" + hex.EncodeToString(b[:])
}

// FreshDir makes a uniquely named empty folder under root on this machine
// and returns its name.
func FreshDir(t testing.TB, root string) string {
	t.Helper()
	name := caseName()
	if err := os.Mkdir(filepath.Join(root, name), 0o755); err != nil {
		t.Fatal(err)
	}
	return name
}

// FreshRemoteDir makes a uniquely named empty folder at the root of tg,
// through the server itself so that the server's user owns it, and returns
// its name.
func FreshRemoteDir(t testing.TB, tg target.Target) string {
	t.Helper()
	name := caseName()
	if err := tg.Mkdir(t.Context(), name); err != nil {
		t.Fatal(err)
	}
	return name
}
