// SPDX-License-Identifier: Apache-2.0

package tracker

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEncodeDecode(t *testing.T) {
	names := []string{"psm_0123abcd", "with:colons:inside", "new\nline", "ünïcødé", string(bytes.Repeat([]byte{'x'}, MaxNameLen)), "\xff\xfe"}
	var stream []byte
	var want []message
	for i, n := range names {
		m := message{op: opRegister, rtype: SharedMemory, name: n, pid: 1000 + i}
		if i%2 == 1 {
			m.op = opUnregister
		}
		b := encode(nil, m)
		if len(b) > pipeBuf {
			t.Fatalf("message of %d bytes > PIPE_BUF", len(b))
		}
		stream = append(stream, b...)
		want = append(want, m)
	}
	var got []message
	for len(stream) > 0 {
		m, n, err := decode(stream)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		got = append(got, m)
		stream = stream[n:]
	}
	if d := cmp.Diff(want, got, cmp.AllowUnexported(message{})); d != "" {
		t.Fatalf("round trip (-want +got):\n%s", d)
	}
}

func TestDecodeCPythonLines(t *testing.T) {
	cases := []struct {
		in   string
		want message
	}{
		{"REGISTER:/psm_be7ca488:shared_memory\n", message{op: opRegister, rtype: "shared_memory", name: "/psm_be7ca488"}},
		{"UNREGISTER:/mp-ea0eyl88:semaphore\n", message{op: opUnregister, rtype: "semaphore", name: "/mp-ea0eyl88"}},
		{"REGISTER:/a:b:shared_memory\n", message{op: opRegister, rtype: "shared_memory", name: "/a:b"}},
		{"PROBE:0:noop\n", message{op: opProbe, rtype: "noop"}},
		{`{"cmd":"REGISTER","rtype":"shared_memory","base64_name":"L3BzbV8x"}` + "\n", message{op: opRegister, rtype: "shared_memory", name: "/psm_1"}},
		{`{"cmd":"PROBE","rtype":"noop"}` + "\n", message{op: opProbe, rtype: "noop"}},
	}
	for _, c := range cases {
		m, n, err := decode([]byte(c.in + "rest"))
		if err != nil || n != len(c.in) || m != c.want {
			t.Errorf("decode(%q) = %+v, %d, %v; want %+v, %d", c.in, m, n, err, c.want, len(c.in))
		}
	}
}

func TestDecodeBad(t *testing.T) {
	for _, in := range []string{
		"\x00X\x05\x00\x01\x00\x00\x00\x01noopsx",          // bad op
		"\x00R\x00\x00\x01\x00\x00\x00\x01x",               // empty type
		"\x00R\x04\x00\x00\x00\x00\x00\x01noop",            // register without a name
		"\x00R\x04\x00\x01\x00\x00\x00\x01NOOPx",           // bad type charset
		"\x00R\x04\x00\x01\x00\x00\x00\x01noop\x00",        // NUL in the name
		"REGISTER:nocolon\n", "HELLO:a:b\n", "{bad json\n", // lines
		"\x07",
	} {
		_, n, err := decode([]byte(in))
		if !errors.Is(err, errBad) || n < 1 || n > len(in) {
			t.Errorf("decode(%q) = n %d, err %v; want errBad", in, n, err)
		}
	}
	for _, in := range []string{"\x00R\x04", "\x00R\x04\x00\x05\x00\x00\x00\x01noopab", "REGISTER:a:b"} {
		if _, n, err := decode([]byte(in)); err != errShort || n != 0 {
			t.Errorf("decode(%q) = n %d, err %v; want errShort", in, n, err)
		}
	}
}

// FuzzDecode: the tracker never crashes on any input, always makes
// progress, and consuming a stream never loops.
func FuzzDecode(f *testing.F) {
	f.Add(encode(nil, message{op: opRegister, rtype: SharedMemory, name: "psm_1", pid: 1}))
	f.Add([]byte("REGISTER:/psm_1:shared_memory\n"))
	f.Add([]byte(`{"cmd":"UNREGISTER","rtype":"shared_memory","base64_name":"L3BzbV8x"}` + "\n"))
	f.Add([]byte("\x00R\x04\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, n, err := decode(b)
		switch {
		case err == errShort:
			if n != 0 || len(b) >= pipeBuf+headerLen+MaxTypeLen+MaxNameLen {
				t.Fatalf("errShort with n %d on %d bytes", n, len(b))
			}
		case err != nil:
			if !errors.Is(err, errBad) || n < 1 || n > len(b) {
				t.Fatalf("n %d, err %v on %d bytes", n, err, len(b))
			}
		default:
			if n < 1 || n > len(b) || check(m) != nil {
				t.Fatalf("n %d, message %+v", n, m)
			}
			if b[0] == magic {
				if re := encode(nil, m); !bytes.Equal(re, b[:n]) {
					t.Fatalf("re-encoding differs: %q vs %q", re, b[:n])
				}
			}
		}
		s := &state{m: map[key]int{}, log: nopLogger}
		rest := s.consume(b)
		if len(rest) > len(b) {
			t.Fatal("consume grew the input")
		}
	})
}
