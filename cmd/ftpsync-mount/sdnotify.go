package main

import (
	"fmt"
	"net"
	"os"

	"github.com/sirupsen/logrus"
)

// notifyReady tells systemd that the mount is ready, for units with
// Type=notify (contrib/systemd/ftpsync-mount@.service): systemd then
// starts what depends on the mount point only once it can be used. Outside
// such a unit NOTIFY_SOCKET is unset and it does nothing. A failure is only
// logged: the mount works, and systemd reports the missing notification.
func notifyReady(log logrus.FieldLogger) {
	if err := sdNotify("READY=1"); err != nil {
		log.WithError(err).Warn("the mount is ready but systemd could not be told; it will time the unit out")
	}
}

// sdNotify sends one state line to $NOTIFY_SOCKET, the datagram socket
// systemd listens on (sd_notify(3)). A name starting with @ is an abstract
// socket, which Go's net package maps by itself. The protocol is one
// datagram; this saves a dependency on a systemd library.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify systemd at %s: %w", path, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify systemd at %s: %w", path, err)
	}
	return nil
}
