package ftpd

import (
	"strings"
	"time"

	server "goftp.io/server/v2"
)

// commands is goftp's default command set plus MFMT (RFC 3659 draft, as
// proftpd and most servers offer it), so the embedded server can keep the
// modification times our uploads set.
func commands(d *driver) map[string]server.Command {
	// goftp does not export its default table, but a server built without
	// Commands carries it; copy that and add ours.
	probe, _ := server.NewServer(&server.Options{Driver: d, Auth: &server.SimpleAuth{}, Perm: server.NewSimplePerm("", "")})
	cmds := make(map[string]server.Command, len(probe.Commands)+1)
	for k, v := range probe.Commands {
		cmds[k] = v
	}
	cmds["MFMT"] = mfmt{d: d}
	// RFC 3659 extensions goftp implements but leaves out of FEAT.
	for _, name := range []string{"MDTM", "SIZE", "REST"} {
		if c, ok := cmds[name]; ok {
			cmds[name] = advertised{c}
		}
	}
	return cmds
}

// advertised lists a command in FEAT.
type advertised struct{ server.Command }

func (advertised) IsExtend() bool { return true }

type mfmt struct{ d *driver }

func (mfmt) IsExtend() bool     { return true }
func (mfmt) RequireParam() bool { return true }
func (mfmt) RequireAuth() bool  { return true }

// Execute handles "MFMT YYYYMMDDHHMMSS path".
func (c mfmt) Execute(sess *server.Session, param string) {
	stamp, name, ok := strings.Cut(param, " ")
	if !ok || name == "" {
		sess.WriteMessage(501, "usage: MFMT YYYYMMDDHHMMSS path")
		return
	}
	t, err := time.ParseInLocation("20060102150405", stamp, time.UTC)
	if err != nil {
		sess.WriteMessage(501, "bad time value")
		return
	}
	p := sess.BuildPath(name)
	if err := c.d.setModTime(p, t); err != nil {
		sess.WriteMessage(550, "cannot set time: file not found or not permitted")
		return
	}
	sess.WriteMessage(213, "Modify="+stamp+"; "+p)
}
