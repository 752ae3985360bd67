package auth

import (
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"errors"

	"github.com/jackc/pgx/v5/pgproto3"
)

// md5Secret is PostgreSQL's stored MD5 form: "md5" + hex(md5(password+user)).
func md5Secret(password, user string) string {
	sum := md5.Sum([]byte(password + user))
	return md5Prefix + hex.EncodeToString(sum[:])
}

// authMD5 runs the MD5 challenge: the client answers
// "md5" + hex(md5(hex(md5(password+user)) + salt)), which can be checked
// from a plain password or from the stored MD5 hash, not from SCRAM.
func authMD5(c Conn, user string, secret Secret) (Result, error) {
	var stored string
	switch secret.Kind {
	case KindPlain:
		stored = md5Secret(secret.Plain, user)
	case KindMD5:
		stored = secret.MD5
	default:
		return Result{}, errors.New("auth: md5 exchange needs a plain or md5 secret")
	}
	var salt [4]byte
	copy(salt[:], randomBytes(len(salt)))
	if err := c.Send(&pgproto3.AuthenticationMD5Password{Salt: salt}); err != nil {
		return Result{}, err
	}
	response, err := receivePasswordMessage(c)
	if err != nil {
		return Result{}, err
	}
	sum := md5.Sum(append([]byte(stored[len(md5Prefix):]), salt[:]...))
	expected := md5Prefix + hex.EncodeToString(sum[:])
	if subtle.ConstantTimeCompare([]byte(response), []byte(expected)) != 1 {
		return Result{}, passwordFailed(user)
	}
	return Result{Method: MethodMD5}, nil
}
