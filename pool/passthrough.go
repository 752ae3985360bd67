package pool

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/xdg-go/stringprep"
)

// Passthrough lets the pool log in to PostgreSQL as a client whose
// password it never saw: with the SCRAM ClientKey recovered from the
// client's own proof (plus the verifier's ServerKey to check the server),
// or with an md5 hash, which is enough to answer an md5 challenge.
type Passthrough struct {
	ClientKey []byte
	ServerKey []byte
	MD5       string // "md5" + 32 hex digits
	// Password, when set, is a cleartext password answered the way libpq
	// and PostgreSQL do (SASLprep for SCRAM, raw bytes otherwise); see
	// passwordLogin.
	Password string
}

func (p *Passthrough) equal(q *Passthrough) bool {
	if p == nil || q == nil {
		return p == q
	}
	return bytes.Equal(p.ClientKey, q.ClientKey) && bytes.Equal(p.ServerKey, q.ServerKey) && p.MD5 == q.MD5 && p.Password == q.Password
}

// passwordLogin returns the login for a cleartext password that pgconn
// would answer differently from PostgreSQL, else nil. pgconn normalises a
// SCRAM password with PRECIS (NFC) where PostgreSQL uses SASLprep (NFKC,
// and some characters mapped to nothing): a non-ASCII password such as
// "Ⅸ" or one with a soft hyphen fails. Such passwords go through the
// wrapper, which computes the proof itself; ASCII ones stay with pgconn
// (and keep SCRAM channel binding).
func passwordLogin(user, password string) *Passthrough {
	ascii := true
	for i := 0; i < len(password); i++ {
		if password[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return nil
	}
	sum := md5.Sum([]byte(password + user))
	return &Passthrough{Password: password, MD5: "md5" + hex.EncodeToString(sum[:])}
}

// saslPrep prepares a password for SCRAM as PostgreSQL does: SASLprep when
// it applies, else the raw bytes (PostgreSQL accepts passwords SASLprep
// rejects, and uses them as they are).
func saslPrep(password string) string {
	p, err := stringprep.SASLprep.Prepare(password)
	if err != nil {
		return password
	}
	return p
}

// passthroughDummy is the password pgconn is given; the wrapper replaces
// what pgconn computes from it with what the real key proves.
const passthroughDummy = "pgrecycle-passthrough"

// passthroughConn sits between pgconn and the server during the login only:
// it rewrites pgconn's SCRAM proof (or md5 response) and the server's final
// SCRAM signature, then gets out of the way.
type passthroughConn struct {
	net.Conn
	pt *Passthrough

	in      []byte // server bytes framed but not yet handed to pgconn
	pending []byte // partial server message
	done    bool   // login finished: plain pass-through

	sentStartup bool
	cleartext   bool // the server asked for the password itself
	md5Salt     []byte
	clientKey   []byte // the SCRAM keys: pt's, or derived from pt.Password
	serverKey   []byte
	clientFirst string // client-first-message-bare
	serverFirst string
	clientFinal string // without proof
	salt        []byte
	iterations  int
	err         error
}

func (p *Passthrough) wrap(_ context.Context, _ *pgconn.Config, c net.Conn) (net.Conn, error) {
	return &passthroughConn{Conn: c, pt: p, clientKey: p.ClientKey, serverKey: p.ServerKey}, nil
}

// unwrapConn returns the socket under a passthrough wrapper once the
// login is over and nothing is left in it.
func unwrapConn(c net.Conn) net.Conn {
	if pc, ok := c.(*passthroughConn); ok && len(pc.in) == 0 && len(pc.pending) == 0 {
		return pc.Conn
	}
	return c
}

func (c *passthroughConn) Write(p []byte) (int, error) {
	if c.done {
		return c.Conn.Write(p)
	}
	out, err := c.rewriteFrontend(p)
	if err != nil {
		c.err = err
		return 0, err
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// rewriteFrontend walks the messages of one write from pgconn.
func (c *passthroughConn) rewriteFrontend(p []byte) ([]byte, error) {
	if !c.sentStartup {
		c.sentStartup = true // the untyped StartupMessage (or SSLRequest) passes
		return p, nil
	}
	var out []byte
	for len(p) >= 5 {
		typ := p[0]
		n := int(binary.BigEndian.Uint32(p[1:5]))
		if n < 4 || 1+n > len(p) {
			return nil, errors.New("passthrough: partial frontend message")
		}
		msg, body := p[:1+n], p[5:1+n]
		p = p[1+n:]
		if typ != 'p' {
			out = append(out, msg...)
			continue
		}
		switch {
		case c.cleartext:
			if c.pt.Password == "" {
				return nil, errors.New("passthrough: server asked for a cleartext password but only a key or hash is known")
			}
			out = appendFrame(out, 'p', append([]byte(c.pt.Password), 0))
		case c.md5Salt != nil:
			if c.pt.MD5 == "" {
				return nil, errors.New("passthrough: server asked for md5 but only a SCRAM key is known")
			}
			sum := md5.Sum(append([]byte(c.pt.MD5[3:]), c.md5Salt...))
			resp := "md5" + hex.EncodeToString(sum[:])
			out = appendFrame(out, 'p', append([]byte(resp), 0))
		case c.serverFirst == "":
			// SASLInitialResponse: mechanism\0 int32 len, client-first.
			mech, rest, ok := bytes.Cut(body, []byte{0})
			if !ok || len(rest) < 4 || string(mech) != "SCRAM-SHA-256" {
				return nil, fmt.Errorf("passthrough: unsupported SASL mechanism %q", mech)
			}
			first := string(rest[4:])
			if !strings.HasPrefix(first, "n,,") {
				return nil, errors.New("passthrough: channel binding is not supported")
			}
			c.clientFirst = first[3:]
			out = append(out, msg...)
		default:
			// SASLResponse: client-final with pgconn's proof, replaced.
			final := string(body)
			i := strings.LastIndex(final, ",p=")
			if i < 0 || len(c.clientKey) == 0 {
				return nil, errors.New("passthrough: no SCRAM client key for this user")
			}
			c.clientFinal = final[:i]
			storedKey := sha256.Sum256(c.clientKey)
			sig := hmacSHA256(storedKey[:], c.authMessage())
			proof := make([]byte, len(sig))
			for j := range sig {
				proof[j] = c.clientKey[j] ^ sig[j]
			}
			out = appendFrame(out, 'p', []byte(c.clientFinal+",p="+base64.StdEncoding.EncodeToString(proof)))
		}
	}
	return out, nil
}

func (c *passthroughConn) authMessage() string {
	return c.clientFirst + "," + c.serverFirst + "," + c.clientFinal
}

func (c *passthroughConn) Read(p []byte) (int, error) {
	for len(c.in) == 0 {
		if c.done {
			return c.Conn.Read(p)
		}
		buf := make([]byte, 4096)
		n, err := c.Conn.Read(buf)
		if n > 0 {
			c.pending = append(c.pending, buf[:n]...)
			if ferr := c.frameBackend(); ferr != nil {
				return 0, ferr
			}
		}
		if err != nil && len(c.in) == 0 {
			return 0, err
		}
	}
	n := copy(p, c.in)
	c.in = c.in[n:]
	return n, nil
}

// frameBackend moves whole server messages from pending to in, rewriting
// the ones the login needs.
func (c *passthroughConn) frameBackend() error {
	for !c.done && len(c.pending) >= 5 {
		// An SSL answer is a single byte; pgconn reads it before TLS, which
		// is below this wrapper, so it never comes here.
		n := int(binary.BigEndian.Uint32(c.pending[1:5]))
		if n < 4 || 1+n > len(c.pending) {
			return nil
		}
		msg := c.pending[:1+n]
		c.pending = c.pending[1+n:]
		if msg[0] == 'R' && len(msg) >= 9 {
			code := binary.BigEndian.Uint32(msg[5:9])
			switch code {
			case 3: // cleartext password
				c.cleartext = true
			case 5: // md5 challenge
				if len(msg) >= 13 {
					c.md5Salt = append([]byte(nil), msg[9:13]...)
				}
			case 11: // SASLContinue: server-first
				c.serverFirst = string(msg[9:])
				if err := c.parseServerFirst(); err != nil {
					return err
				}
			case 12: // SASLFinal: check the server, then show pgconn what it expects
				rewritten, err := c.rewriteServerFinal(string(msg[9:]))
				if err != nil {
					return err
				}
				msg = rewritten
			case 0: // AuthenticationOk: the login is over
				c.done = true
			}
		}
		c.in = append(c.in, msg...)
	}
	if c.done && len(c.pending) > 0 {
		c.in = append(c.in, c.pending...)
		c.pending = nil
	}
	return nil
}

func (c *passthroughConn) parseServerFirst() error {
	for _, attr := range strings.Split(c.serverFirst, ",") {
		switch {
		case strings.HasPrefix(attr, "s="):
			s, err := base64.StdEncoding.DecodeString(attr[2:])
			if err != nil {
				return err
			}
			c.salt = s
		case strings.HasPrefix(attr, "i="):
			i, err := strconv.Atoi(attr[2:])
			if err != nil {
				return err
			}
			c.iterations = i
		}
	}
	if c.salt == nil || c.iterations <= 0 {
		return errors.New("passthrough: malformed SCRAM server-first message")
	}
	if c.pt.Password != "" {
		salted, err := pbkdf2.Key(sha256.New, saslPrep(c.pt.Password), c.salt, c.iterations, sha256.Size)
		if err != nil {
			return err
		}
		c.clientKey, c.serverKey = hmacSHA256(salted, "Client Key"), hmacSHA256(salted, "Server Key")
	}
	return nil
}

func (c *passthroughConn) rewriteServerFinal(final string) ([]byte, error) {
	got, ok := strings.CutPrefix(final, "v=")
	if !ok {
		return nil, fmt.Errorf("passthrough: server rejected SCRAM: %s", final)
	}
	if len(c.serverKey) > 0 {
		want := base64.StdEncoding.EncodeToString(hmacSHA256(c.serverKey, c.authMessage()))
		if !hmac.Equal([]byte(got), []byte(want)) {
			return nil, errors.New("passthrough: the server's SCRAM signature does not match the verifier")
		}
	}
	salted, err := pbkdf2.Key(sha256.New, passthroughDummy, c.salt, c.iterations, sha256.Size)
	if err != nil {
		return nil, err
	}
	dummyServerKey := hmacSHA256(salted, "Server Key")
	v := "v=" + base64.StdEncoding.EncodeToString(hmacSHA256(dummyServerKey, c.authMessage()))
	body := binary.BigEndian.AppendUint32(nil, 12)
	return appendFrame(nil, 'R', append(body, v...)), nil
}

func appendFrame(dst []byte, typ byte, body []byte) []byte {
	dst = append(dst, typ)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)+4))
	return append(dst, body...)
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	_, _ = io.WriteString(m, data)
	return m.Sum(nil)
}
