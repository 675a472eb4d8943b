// SPDX-License-Identifier: Apache-2.0

package tracker

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// The pipe protocol (see doc.go). Every message is written with one
// write(2) of at most pipeBuf bytes, so messages from the processes of a
// tree never interleave. The multiproc form is binary and carries its
// lengths, so a name may hold any byte:
//
//	[0]    0x00 (magic: no CPython line starts with it)
//	[1]    op: 'R' register, 'U' unregister, 'P' probe
//	[2]    length of the resource type, 1..MaxTypeLen
//	[3:5]  length of the name, big-endian, 0..MaxNameLen (0 only for 'P')
//	[5:9]  pid of the sender, big-endian
//	       the type ([a-z0-9_]), then the name (any bytes but NUL)
//
// The tracker also accepts CPython's line forms for mixed trees:
// "REGISTER:<name>:<rtype>\n" (split at the first and the last ':') and
// the newer JSON line {"cmd":...,"rtype":...,"base64_name":...}.

const (
	magic     = 0x00
	headerLen = 9
	// MaxTypeLen bounds the length of a resource type.
	MaxTypeLen = 32
	// MaxNameLen bounds the length of a resource name in bytes.
	MaxNameLen = 1024
	pipeBuf    = 4096 // PIPE_BUF on Linux: writes up to it are atomic
	maxLine    = pipeBuf
)

const (
	opRegister   = 'R'
	opUnregister = 'U'
	opProbe      = 'P'
)

// message is one decoded request.
type message struct {
	op    byte
	rtype string
	name  string
	pid   int
}

var (
	// errShort: the buffer holds the start of a message, not all of it.
	errShort = errors.New("tracker: short message")
	errBad   = errors.New("tracker: malformed message")
)

func validType(t string) bool {
	if len(t) == 0 || len(t) > MaxTypeLen {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func validName(n string) bool {
	return len(n) > 0 && len(n) <= MaxNameLen && !bytes.ContainsRune([]byte(n), 0)
}

// encode appends the binary form of m to dst.
func encode(dst []byte, m message) []byte {
	dst = append(dst, magic, m.op, byte(len(m.rtype)))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.name)))
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.pid))
	dst = append(dst, m.rtype...)
	return append(dst, m.name...)
}

// decode decodes the first message of buf. It returns the number of bytes
// the message (or the garbage to skip) took. err is errShort (n == 0) when
// buf holds only the start of a message, or wraps errBad when the first n
// bytes (n >= 1) are not a valid message and must be skipped; the rest of
// buf may still hold valid messages.
func decode(buf []byte) (m message, n int, err error) {
	if len(buf) == 0 {
		return m, 0, errShort
	}
	switch buf[0] {
	case magic:
		return decodeBinary(buf)
	case '{', 'R', 'U', 'P':
		return decodeLine(buf)
	}
	return m, 1, fmt.Errorf("%w: first byte %#x", errBad, buf[0])
}

func decodeBinary(buf []byte) (m message, n int, err error) {
	if len(buf) < headerLen {
		return m, 0, errShort
	}
	op, tl, nl := buf[1], int(buf[2]), int(binary.BigEndian.Uint16(buf[3:5]))
	pid := binary.BigEndian.Uint32(buf[5:9])
	if op != opRegister && op != opUnregister && op != opProbe || tl == 0 || tl > MaxTypeLen || nl > MaxNameLen || pid > 1<<22 {
		return m, 1, fmt.Errorf("%w: bad header % x", errBad, buf[:headerLen])
	}
	total := headerLen + tl + nl
	if len(buf) < total {
		return m, 0, errShort
	}
	m = message{op: op, rtype: string(buf[headerLen : headerLen+tl]), name: string(buf[headerLen+tl : total]), pid: int(pid)}
	if err := check(m); err != nil {
		return message{}, total, err
	}
	return m, total, nil
}

// check validates a decoded message.
func check(m message) error {
	if !validType(m.rtype) {
		return fmt.Errorf("%w: resource type %q", errBad, m.rtype)
	}
	if m.op == opProbe {
		return nil
	}
	if !validName(m.name) {
		return fmt.Errorf("%w: resource name %q", errBad, m.name)
	}
	return nil
}

// decodeLine decodes one of CPython's line forms.
func decodeLine(buf []byte) (m message, n int, err error) {
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		if len(buf) < maxLine {
			return m, 0, errShort
		}
		return m, maxLine, fmt.Errorf("%w: line longer than %d bytes", errBad, maxLine)
	}
	n = i + 1
	line := bytes.TrimSpace(buf[:i])
	if len(line) > 0 && line[0] == '{' {
		var j struct {
			Cmd   string `json:"cmd"`
			Rtype string `json:"rtype"`
			Name  string `json:"base64_name"`
		}
		if err := json.Unmarshal(line, &j); err != nil {
			return m, n, fmt.Errorf("%w: %v", errBad, err)
		}
		name, err := base64.URLEncoding.DecodeString(j.Name)
		if err != nil {
			return m, n, fmt.Errorf("%w: base64_name: %v", errBad, err)
		}
		m.rtype, m.name = j.Rtype, string(name)
		m.op, err = lineOp(j.Cmd)
		if err != nil {
			return message{}, n, err
		}
	} else {
		a, b := bytes.IndexByte(line, ':'), bytes.LastIndexByte(line, ':')
		if a < 0 || a == b {
			return m, n, fmt.Errorf("%w: %q", errBad, line)
		}
		m.op, err = lineOp(string(line[:a]))
		if err != nil {
			return message{}, n, err
		}
		m.name, m.rtype = string(line[a+1:b]), string(line[b+1:])
	}
	if m.op == opProbe {
		m.name = ""
	}
	if err := check(m); err != nil {
		return message{}, n, err
	}
	return m, n, nil
}

func lineOp(cmd string) (byte, error) {
	switch cmd {
	case "REGISTER":
		return opRegister, nil
	case "UNREGISTER":
		return opUnregister, nil
	case "PROBE":
		return opProbe, nil
	}
	return 0, fmt.Errorf("%w: command %q", errBad, cmd)
}
