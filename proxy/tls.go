package proxy

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"

	"go.uber.org/zap"

	"github.com/pgrecycle/pgrecycle/config"
)

// tlsHandshakeByte starts a TLS record (ClientHello): a client using
// direct TLS (PostgreSQL 17's sslnegotiation=direct) sends it first.
const tlsHandshakeByte = 0x16

// alpnPostgreSQL is the ALPN protocol PostgreSQL requires for direct TLS.
const alpnPostgreSQL = "postgresql"

// loadTLS builds the client-facing TLS configuration; nil when disabled.
func loadTLS(c config.TLS, log *zap.Logger) (*tls.Config, error) {
	if c.Mode == "" || c.Mode == "disable" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	if fi, err := os.Stat(c.KeyFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("tls.key_file is readable by other users; chmod 600 it", zap.String("file", c.KeyFile))
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{alpnPostgreSQL},
	}
	if c.ClientCert != "none" && c.ClientCert != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.client_ca_file: %w", err)
		}
		cfg.ClientCAs = x509.NewCertPool()
		if !cfg.ClientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.client_ca_file: no PEM certificate in %s", c.ClientCAFile)
		}
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if c.ClientCert == "require" {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return cfg, nil
}

// prefixConn replays bytes already read from a connection before reading
// more from it, so a TLS handshake can start with a buffered ClientHello.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// isUnix reports whether the client came over the unix socket, where TLS
// does not apply.
func isUnix(c net.Conn) bool {
	_, ok := c.(*net.UnixConn)
	return ok
}

// startTLS performs the server side of the handshake on the session's
// connection and switches its reader and writer to the encrypted stream.
func (s *session) startTLS(cfg *tls.Config, raw net.Conn, direct bool) error {
	tc := tls.Server(raw, cfg)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	if direct && tc.ConnectionState().NegotiatedProtocol != alpnPostgreSQL {
		// PostgreSQL refuses direct TLS without the ALPN protocol, to rule
		// out cross-protocol attacks.
		_ = tc.Close()
		return fmt.Errorf("direct TLS without ALPN %q", alpnPostgreSQL)
	}
	s.conn = tc
	s.tls = true
	s.cw = s.newClientWriter()
	if len(cfg.Certificates) > 0 {
		s.endPoint = tlsServerEndPoint(cfg.Certificates[0].Leaf)
	}
	return nil
}

// tlsServerEndPoint is the tls-server-end-point channel binding data
// (RFC 5929) of the certificate the proxy serves: its hash with the
// certificate's signature digest, SHA-256 for MD5 and SHA-1, as libpq
// computes it. nil when the digest is not one libpq knows (Ed25519): the
// proxy then offers no SCRAM-SHA-256-PLUS.
func tlsServerEndPoint(cert *x509.Certificate) []byte {
	if cert == nil {
		return nil
	}
	var sum []byte
	switch cert.SignatureAlgorithm {
	case x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1,
		x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.ECDSAWithSHA256, x509.DSAWithSHA256:
		h := sha256.Sum256(cert.Raw)
		sum = h[:]
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		h := sha512.Sum384(cert.Raw)
		sum = h[:]
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		h := sha512.Sum512(cert.Raw)
		sum = h[:]
	}
	return sum
}

// TLSServerEndPoint gives the auth package the channel binding data of
// this session's TLS connection (nil without TLS).
func (s *session) TLSServerEndPoint() []byte { return s.endPoint }
