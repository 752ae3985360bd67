package proxy

import (
	"github.com/pgrecycle/pgrecycle/config"
)

// adminStartup completes the login of an admin console client.
func (s *session) adminStartup(cfg *config.Config) error {
	allowed := false
	for _, u := range cfg.Auth.AdminUsers {
		if u == s.user {
			allowed = true
		}
	}
	if !allowed {
		_ = s.sendError(fatalf(codeInsufficientPriv, "user %q is not allowed on the admin console (auth.admin_users)", s.user))
		return errSessionDone
	}
	_ = s.sendError(fatalf(codeFeatureNotSupported, "the admin console is not available yet"))
	return errSessionDone
}

// adminLoop serves admin console commands.
func (s *session) adminLoop() error { return errSessionDone }
