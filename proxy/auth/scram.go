package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"
	"github.com/xdg-go/stringprep"
)

const (
	scramMechanism     = "SCRAM-SHA-256"
	scramPlusMechanism = "SCRAM-SHA-256-PLUS"
	// PostgreSQL's defaults for new verifiers (scram_iterations, salt length).
	defaultIterations = 4096
	saltLen           = 16
)

// saslPrep normalises a password as PostgreSQL does before hashing it:
// SASLprep when it applies, else the raw bytes (PostgreSQL accepts passwords
// that SASLprep rejects, such as invalid UTF-8, and uses them as they are).
func saslPrep(password string) string {
	p, err := stringprep.SASLprep.Prepare(password)
	if err != nil {
		return password
	}
	return p
}

func saltedPassword(password string, salt []byte, iterations int) ([]byte, error) {
	return pbkdf2.Key(sha256.New, saslPrep(password), salt, iterations, sha256.Size)
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// deriveVerifier computes the verifier PostgreSQL would store for password.
func deriveVerifier(password string, salt []byte, iterations int) (SCRAMVerifier, error) {
	salted, err := saltedPassword(password, salt, iterations)
	if err != nil {
		return SCRAMVerifier{}, err
	}
	clientKey := hmacSHA256(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	return SCRAMVerifier{
		Iterations: iterations,
		Salt:       salt,
		StoredKey:  stored[:],
		ServerKey:  hmacSHA256(salted, "Server Key"),
	}, nil
}

// authSCRAM runs SCRAM-SHA-256, and over TLS offers SCRAM-SHA-256-PLUS
// first, as PostgreSQL does, so clients that require channel binding
// (libpq channel_binding=require) can log in. A plain secret gets the
// verifier verifiers holds for it (a fresh one when verifiers is nil).
func authSCRAM(c Conn, user string, secret Secret, verifiers *VerifierCache) (Result, error) {
	v := secret.SCRAM
	switch secret.Kind {
	case KindSCRAM:
	case KindPlain:
		var err error
		if v, err = verifiers.verifier(user, secret.Plain); err != nil {
			return Result{}, err
		}
	default:
		return Result{}, errors.New("auth: scram exchange needs a plain or scram secret")
	}
	creds := scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(v.Salt), Iters: v.Iterations},
		StoredKey:  v.StoredKey,
		ServerKey:  v.ServerKey,
	}
	// The user comes from the startup message; PostgreSQL clients send an
	// empty SCRAM user name ("n=,"), so whatever it holds is ignored.
	server, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return creds, nil })
	if err != nil {
		return Result{}, err
	}
	conv := server.NewConversation()
	mechanisms := []string{scramMechanism}
	if cb, ok := c.(ChannelBinder); ok {
		if data := cb.TLSServerEndPoint(); len(data) > 0 {
			conv = server.NewConversationWithChannelBinding(scram.ChannelBinding{Type: scram.ChannelBindingTLSServerEndpoint, Data: data})
			mechanisms = []string{scramPlusMechanism, scramMechanism}
		}
	}

	if err := c.Send(&pgproto3.AuthenticationSASL{AuthMechanisms: mechanisms}); err != nil {
		return Result{}, err
	}
	body, err := receivePassword(c, "a SASL initial response")
	if err != nil {
		return Result{}, err
	}
	var initial pgproto3.SASLInitialResponse
	if err := initial.Decode(body); err != nil {
		return Result{}, protocolViolation("malformed SASLInitialResponse message")
	}
	if !slices.Contains(mechanisms, initial.AuthMechanism) {
		return Result{}, protocolViolation("client selected an invalid SASL authentication mechanism")
	}
	clientFirst := string(initial.Data) // copies: body dies at the next Receive
	serverFirst, err := conv.Step(clientFirst)
	if err != nil {
		return Result{}, protocolViolation("malformed SCRAM message: " + err.Error())
	}
	if err := c.Send(&pgproto3.AuthenticationSASLContinue{Data: []byte(serverFirst)}); err != nil {
		return Result{}, err
	}

	body, err = receivePassword(c, "a SASL response")
	if err != nil {
		return Result{}, err
	}
	var response pgproto3.SASLResponse
	if err := response.Decode(body); err != nil {
		return Result{}, protocolViolation("malformed SASLResponse message")
	}
	clientFinal := string(response.Data)
	serverFinal, err := conv.Step(clientFinal)
	if err != nil {
		if serverFinal == scram.ErrInvalidProof {
			return Result{}, passwordFailed(user)
		}
		return Result{}, protocolViolation("malformed SCRAM message: " + err.Error())
	}
	if !conv.Valid() {
		return Result{}, passwordFailed(user)
	}
	clientKey, err := recoverClientKey(v, clientFirst, serverFirst, clientFinal)
	if err != nil {
		return Result{}, passwordFailed(user)
	}
	if err := c.Send(&pgproto3.AuthenticationSASLFinal{Data: []byte(serverFinal)}); err != nil {
		return Result{}, err
	}
	return Result{Method: MethodSCRAM, ClientKey: clientKey}, nil
}

// recoverClientKey extracts the client's ClientKey from its proof so that the
// proxy can later authenticate to a backend holding the same verifier.
// xdg-go/scram does not expose the AuthMessage, so it is rebuilt here from
// the three messages (RFC 5802 §3).
func recoverClientKey(v SCRAMVerifier, clientFirst, serverFirst, clientFinal string) ([]byte, error) {
	// client-first-message-bare is client-first without the GS2 header,
	// i.e. after its second comma.
	_, afterFlag, ok := strings.Cut(clientFirst, ",")
	if !ok {
		return nil, errors.New("auth: malformed client-first message")
	}
	_, clientFirstBare, ok := strings.Cut(afterFlag, ",")
	if !ok {
		return nil, errors.New("auth: malformed client-first message")
	}
	i := strings.LastIndexByte(clientFinal, ',')
	if i < 0 {
		return nil, errors.New("auth: malformed client-final message")
	}
	proofB64, ok := strings.CutPrefix(clientFinal[i+1:], "p=")
	if !ok {
		return nil, errors.New("auth: client-final message has no proof")
	}
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	if err != nil {
		return nil, errors.New("auth: malformed client proof")
	}
	authMessage := clientFirstBare + "," + serverFirst + "," + clientFinal[:i]
	signature := hmacSHA256(v.StoredKey, authMessage)
	if len(proof) != len(signature) {
		return nil, errors.New("auth: client proof has the wrong length")
	}
	clientKey := make([]byte, len(proof))
	for j := range proof {
		clientKey[j] = proof[j] ^ signature[j]
	}
	sum := sha256.Sum256(clientKey)
	if !hmac.Equal(sum[:], v.StoredKey) {
		return nil, errors.New("auth: recovered client key does not match the verifier")
	}
	return clientKey, nil
}
