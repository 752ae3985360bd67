package main

import (
	"net"
	"strings"

	"go.uber.org/zap"
)

// systemdNotifier tells systemd about the service's state when it runs
// under Type=notify or Type=notify-reload (NOTIFY_SOCKET is set): units
// ordered after pgrecycle start once it accepts connections, not when its
// process starts, and `systemctl reload` returns once the reload is done.
// Without NOTIFY_SOCKET it does nothing.
type systemdNotifier struct {
	addr *net.UnixAddr
	log  *zap.Logger
}

// newSystemdNotifier takes NOTIFY_SOCKET's value: a path, or an abstract
// socket name starting with '@' (which Go's unix addresses read the same).
func newSystemdNotifier(socket string, log *zap.Logger) *systemdNotifier {
	n := &systemdNotifier{log: log}
	if socket != "" && (strings.HasPrefix(socket, "/") || strings.HasPrefix(socket, "@")) {
		n.addr = &net.UnixAddr{Name: socket, Net: "unixgram"}
	}
	return n
}

// notify sends one state message ("READY=1", ...); a failure is logged,
// never fatal: the service works the same, systemd only learns less.
func (n *systemdNotifier) notify(state string) {
	if n.addr == nil {
		return
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err == nil {
		_, err = c.Write([]byte(state))
		_ = c.Close()
	}
	if err != nil {
		n.log.Warn("cannot notify systemd", zap.String("socket", n.addr.Name), zap.Error(err))
	}
}

func (n *systemdNotifier) ready(addr string) { n.notify("READY=1\nSTATUS=serving on " + addr) }

// reloading starts a reload; notify-reload units need the monotonic clock
// with it.
func (n *systemdNotifier) reloading() {
	msg := "RELOADING=1"
	if usec, ok := monotonicMicros(); ok {
		msg += "\nMONOTONIC_USEC=" + usec
	}
	n.notify(msg)
}

func (n *systemdNotifier) stopping() { n.notify("STOPPING=1\nSTATUS=draining") }
