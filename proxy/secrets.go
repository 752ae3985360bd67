package proxy

import (
	"os"

	"go.uber.org/zap"

	"github.com/pgrecycle/pgrecycle/config"
)

// warnReadableSecrets logs a warning for each file holding secrets that
// any user of the machine can read. Group-readable is left alone: that is
// how Kubernetes mounts secrets with fsGroup.
func warnReadableSecrets(cfg *config.Config, log *zap.Logger) {
	hasPassword := false
	for _, d := range cfg.Databases {
		hasPassword = hasPassword || d.Password != ""
	}
	for _, u := range cfg.Users {
		hasPassword = hasPassword || u.Password != ""
	}
	check := func(path, what string) {
		if path == "" {
			return
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o004 != 0 {
			log.Warn(what+" is readable by other users; chmod 600 it", zap.String("file", path))
		}
	}
	if hasPassword {
		check(cfg.Path, "the configuration file holds passwords and")
	}
	check(cfg.Auth.File, "auth.file")
}
