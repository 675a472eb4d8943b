// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
)

// The authkey handshake is CPython's (multiprocessing.connection
// deliver_challenge / answer_challenge); PROTOCOL.md describes it byte by
// byte.
const (
	challengePrefix = "#CHALLENGE#"
	welcomeMsg      = "#WELCOME#"
	failureMsg      = "#FAILURE#"
	// challengeLen is the number of random bytes in a challenge we deliver
	// (CPython 3.12+: MESSAGE_LENGTH).
	challengeLen = 40
	// legacyChallengeLen is a CPython <= 3.11 challenge's length.
	legacyChallengeLen = 20
	// handshakeMax is the largest handshake frame either side reads.
	handshakeMax = 256
	// maxDigestName is the longest allowed digest name ("sha3_256").
	maxDigestName = 8
)

// digests are the HMAC digests a {name} prefix may select (CPython's
// _ALLOWED_DIGESTS).
var digests = map[string]func() hash.Hash{
	"md5":      md5.New,
	"sha256":   sha256.New,
	"sha384":   sha512.New384,
	"sha3_256": func() hash.Hash { return sha3.New256() },
	"sha3_384": func() hash.Hash { return sha3.New384() },
}

// authError is an ErrAuthentication with CPython's explanation.
func authError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrAuthentication, fmt.Sprintf(format, args...))
}

func mac(name string, key, msg []byte) []byte {
	m := hmac.New(digests[name], key)
	m.Write(msg)
	return m.Sum(nil)
}

// digestAndPayload splits a challenge or a response into a digest name and
// the rest; a 16- or 20-byte message is the legacy form (no name, MD5).
func digestAndPayload(msg []byte) (name string, payload []byte, err error) {
	if len(msg) == 16 || len(msg) == 20 {
		return "", msg, nil
	}
	if len(msg) > 0 && msg[0] == '{' {
		end := bytes.IndexByte(msg[1:min(len(msg), maxDigestName+2)], '}')
		if end > 0 {
			name := string(msg[1 : 1+end])
			if _, ok := digests[name]; ok {
				return name, msg[end+2:], nil
			}
		}
	}
	return "", nil, authError("unsupported message length, missing digest prefix, or unsupported digest")
}

// response computes the answer to a challenge message (the bytes after
// #CHALLENGE#).
func response(authkey, msg []byte) ([]byte, error) {
	name, _, err := digestAndPayload(msg)
	if err != nil {
		return nil, err
	}
	if name == "" {
		// A legacy (CPython <= 3.11) challenge: raw HMAC-MD5.
		return mac("md5", authkey, msg), nil
	}
	return append([]byte("{"+name+"}"), mac(name, authkey, msg)...), nil
}

// verify checks a response to the challenge message msg. Unless strict,
// a 16-byte raw HMAC-MD5 answer (CPython <= 3.11) is accepted.
func verify(authkey, msg, resp []byte, strict bool) error {
	name, got, err := digestAndPayload(resp)
	if err != nil {
		return err
	}
	if name == "" {
		if strict {
			return authError("legacy HMAC-MD5 response refused (strict mode)")
		}
		name = "md5"
	}
	want := mac(name, authkey, msg)
	if len(want) != len(got) {
		return authError("expected %s of length %d, got %d", name, len(want), len(got))
	}
	if !hmac.Equal(want, got) {
		return authError("digest received was wrong")
	}
	return nil
}

// DeliverChallenge runs the challenging half of CPython's authkey
// handshake on c (deliver_challenge): it sends #CHALLENGE#{sha256} and 40
// random bytes, checks the peer's HMAC answer and replies #WELCOME# or
// #FAILURE#. A wrong answer returns an error wrapping ErrAuthentication.
// In strict mode a legacy 16-byte HMAC-MD5 answer (what CPython 3.11 and
// older send) is refused; otherwise it is accepted, as CPython 3.12+ does.
//
// Listener.Accept and Dial run the handshake themselves; these functions
// are for connections made some other way.
func DeliverChallenge(ctx context.Context, c *Conn, authkey []byte, strict bool) error {
	msg := make([]byte, 0, len("{sha256}")+challengeLen)
	msg = append(msg, "{sha256}"...)
	msg = msg[:cap(msg)]
	if _, err := rand.Read(msg[len("{sha256}"):]); err != nil {
		return err
	}
	if err := c.SendBytes(ctx, append([]byte(challengePrefix), msg...)); err != nil {
		return err
	}
	resp, err := c.recvLimited(ctx, handshakeMax)
	if err != nil {
		return handshakeRecvError(err)
	}
	if verr := verify(authkey, msg, resp, strict); verr != nil {
		if err := c.SendBytes(ctx, []byte(failureMsg)); err != nil {
			return errors.Join(verr, err)
		}
		return verr
	}
	return c.SendBytes(ctx, []byte(welcomeMsg))
}

// AnswerChallenge runs the answering half of CPython's authkey handshake
// on c (answer_challenge): it reads a #CHALLENGE# frame, answers with the
// HMAC the challenge asks for (raw HMAC-MD5 for a legacy 20-byte
// challenge, {digest}+HMAC otherwise) and expects #WELCOME#. A rejected
// answer returns an error wrapping ErrAuthentication.
func AnswerChallenge(ctx context.Context, c *Conn, authkey []byte) error {
	m, err := c.recvLimited(ctx, handshakeMax)
	if err != nil {
		return handshakeRecvError(err)
	}
	msg, ok := bytes.CutPrefix(m, []byte(challengePrefix))
	if !ok {
		return authError("protocol error, expected a challenge")
	}
	if len(msg) < legacyChallengeLen {
		return authError("challenge too short: %d bytes", len(msg))
	}
	resp, err := response(authkey, msg)
	if err != nil {
		return err
	}
	if err := c.SendBytes(ctx, resp); err != nil {
		return err
	}
	m, err = c.recvLimited(ctx, handshakeMax)
	if err != nil {
		return handshakeRecvError(err)
	}
	if string(m) != welcomeMsg {
		return authError("digest sent was rejected")
	}
	return nil
}

// handshakeRecvError turns a framing problem or the peer's going away
// during the handshake into an authentication failure (wrapping both);
// I/O errors and cancellation stay what they are.
func handshakeRecvError(err error) error {
	var tl *FrameTooLargeError
	if errors.As(err, &tl) || errors.Is(err, ErrBadFrame) || errors.Is(err, io.EOF) || errors.Is(err, ErrTruncated) {
		return fmt.Errorf("%w: %w", ErrAuthentication, err)
	}
	return err
}
