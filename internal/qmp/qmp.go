// Package qmp is a small client of the QEMU Machine Protocol, the JSON
// protocol QEMU speaks on its -qmp socket.
//
// Dial reads QEMU's greeting and leaves capabilities negotiation mode; then
// Execute runs commands. Each command carries its own "id" and its reply is
// matched by that id, so asynchronous events (STOP, SHUTDOWN, POWERDOWN, ...)
// may arrive between a command and its reply, and several goroutines may
// execute commands at once. Events are delivered on the channel Events
// returns.
//
// A Client owns one goroutine, which reads the connection until it ends
// (QEMU exited, or Close). QEMU serves one QMP client at a time per socket:
// a second Dial on the same socket waits until the first client is closed.
package qmp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// ErrClosed is returned by Execute once the connection is closed (by Close,
// or because QEMU closed it, as it does after "quit").
var ErrClosed = errors.New("qmp: connection closed")

// Error is an error QEMU answered a command with:
// {"error": {"class": ..., "desc": ...}}.
type Error struct {
	// Class is the error class, e.g. "GenericError" or "CommandNotFound".
	Class string `json:"class"`
	// Desc is QEMU's human-readable description.
	Desc string `json:"desc"`
	// Command is the command that failed.
	Command string `json:"-"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("qmp: %s: %s: %s", e.Command, e.Class, e.Desc)
}

// Event is an asynchronous QMP event.
type Event struct {
	// Event is the event's name, e.g. "SHUTDOWN".
	Event string
	// Data is the event's "data" member (nil when it has none).
	Data json.RawMessage
	// Timestamp is when QEMU emitted the event.
	Timestamp time.Time
}

// Version is QEMU's version as the greeting reports it.
type Version struct {
	QEMU struct {
		Major int `json:"major"`
		Minor int `json:"minor"`
		Micro int `json:"micro"`
	} `json:"qemu"`
	Package string `json:"package"`
}

func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d", v.QEMU.Major, v.QEMU.Minor, v.QEMU.Micro)
}

// Greeting is the first message QEMU sends on a new connection.
type Greeting struct {
	Version      Version  `json:"version"`
	Capabilities []string `json:"capabilities"`
}

// eventBuffer is the capacity of the events channel. Events that arrive
// while it is full are dropped (and counted), so that a client that never
// reads events cannot stall command replies.
const eventBuffer = 256

// Client is a QMP connection. Its methods are safe for concurrent use.
type Client struct {
	conn     net.Conn
	greeting Greeting

	wmu sync.Mutex // serializes writes

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan reply
	err     error // why the connection ended, once it has
	dropped uint64

	events chan Event
	done   chan struct{} // closed when the reader has exited
}

// reply is the outcome of one command.
type reply struct {
	ret json.RawMessage
	err *Error
}

// message is any message QEMU sends.
type message struct {
	QMP       *Greeting       `json:"QMP"`
	Return    json.RawMessage `json:"return"`
	Error     *Error          `json:"error"`
	ID        json.RawMessage `json:"id"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// Dial connects to the QMP unix socket at socketPath, reads the greeting and
// negotiates capabilities (none are enabled). ctx bounds the whole
// handshake.
func Dial(ctx context.Context, socketPath string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return nil, fmt.Errorf("qmp: dial %s: %w", socketPath, err)
	}
	c, err := NewClient(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("qmp: %s: %w", socketPath, err)
	}
	return c, nil
}

// NewClient runs the QMP handshake on conn, which the Client then owns (it
// is closed on error). ctx bounds the handshake.
func NewClient(ctx context.Context, conn net.Conn) (*Client, error) {
	c := &Client{
		conn:    conn,
		pending: make(map[uint64]chan reply),
		events:  make(chan Event, eventBuffer),
		done:    make(chan struct{}),
	}
	dec := json.NewDecoder(conn)
	g, err := c.readGreeting(ctx, dec)
	if err != nil {
		conn.Close()
		return nil, err
	}
	c.greeting = g
	go c.read(dec)
	if err := c.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// readGreeting reads the greeting, honouring ctx.
func (c *Client) readGreeting(ctx context.Context, dec *json.Decoder) (Greeting, error) {
	// ctx ends the read through a deadline in the past: set when ctx is
	// done (not from ctx's deadline, so that the error is ctx's own).
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.conn.SetReadDeadline(time.Unix(1, 0))
		close(fired)
	})
	var m message
	err := dec.Decode(&m)
	if !stop() {
		<-fired
	}
	c.conn.SetReadDeadline(time.Time{})
	if err != nil {
		if ctx.Err() != nil {
			return Greeting{}, fmt.Errorf("qmp: greeting: %w", ctx.Err())
		}
		return Greeting{}, fmt.Errorf("qmp: greeting: %w", err)
	}
	if m.QMP == nil {
		return Greeting{}, errors.New("qmp: the first message is not a QMP greeting")
	}
	return *m.QMP, nil
}

// Greeting returns the greeting QEMU sent.
func (c *Client) Greeting() Greeting { return c.greeting }

// Events returns the channel of asynchronous events. It is closed once the
// connection has ended. Events are buffered; when the buffer is full, new
// events are dropped (see Dropped).
func (c *Client) Events() <-chan Event { return c.events }

// Dropped reports how many events were dropped because the events channel
// was full.
func (c *Client) Dropped() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// Done is closed once the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended (nil while it is open). A connection
// QEMU closed (it exited) ends with io.EOF; one closed by Close with
// ErrClosed.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection and waits for the reader goroutine to exit.
// Pending and later Execute calls fail with ErrClosed. Close is idempotent.
func (c *Client) Close() error {
	c.fail(ErrClosed)
	err := c.conn.Close()
	<-c.done
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// fail records why the connection ended (the first reason wins) and fails
// the pending commands.
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	for id, ch := range c.pending {
		delete(c.pending, id)
		close(ch)
	}
}

// read is the reader goroutine: it dispatches replies and events until the
// connection ends.
func (c *Client) read(dec *json.Decoder) {
	defer close(c.done)
	defer close(c.events)
	for {
		var m message
		if err := dec.Decode(&m); err != nil {
			switch {
			case errors.Is(err, net.ErrClosed):
				err = ErrClosed
			case errors.Is(err, syscall.ECONNRESET):
				err = io.EOF // QEMU exited with bytes of ours unread
			}
			c.fail(err)
			c.conn.Close()
			return
		}
		switch {
		case m.Event != "":
			ev := Event{Event: m.Event, Data: m.Data}
			if ts := m.Timestamp; ts != nil {
				ev.Timestamp = time.Unix(ts.Seconds, ts.Microseconds*1000)
			}
			select {
			case c.events <- ev:
			default:
				c.mu.Lock()
				c.dropped++
				c.mu.Unlock()
			}
		case m.ID != nil:
			var id uint64
			if json.Unmarshal(m.ID, &id) != nil {
				continue // not one of ours
			}
			c.mu.Lock()
			ch := c.pending[id]
			delete(c.pending, id)
			c.mu.Unlock()
			if ch != nil {
				ch <- reply{ret: m.Return, err: m.Error}
			}
		}
		// Anything else (a reply without an id: QEMU could not parse a
		// request) cannot be matched; requests from this client always
		// parse.
	}
}

// request is a command as sent.
type request struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
	ID        uint64 `json:"id"`
}

// Execute runs command with args (nil for none; otherwise anything that
// encodes to a JSON object) and decodes the reply's "return" member into
// result (ignored when nil). An error QEMU answers with is an *Error. ctx
// bounds the wait for the reply; a command abandoned because ctx ended may
// still run in QEMU.
func (c *Client) Execute(ctx context.Context, command string, args any, result any) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("qmp: %s: %w", command, err)
	}
	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return fmt.Errorf("qmp: %s: %w", command, ErrClosed)
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()

	b, err := json.Marshal(request{Execute: command, Arguments: args, ID: id})
	if err != nil {
		c.forget(id)
		return fmt.Errorf("qmp: %s: encode arguments: %w", command, err)
	}
	if err := c.write(ctx, append(b, '\n')); err != nil {
		c.forget(id)
		return fmt.Errorf("qmp: %s: %w", command, err)
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return fmt.Errorf("qmp: %s: %w", command, ErrClosed)
		}
		if r.err != nil {
			e := *r.err
			e.Command = command
			return &e
		}
		if result != nil {
			ret := r.ret
			if len(bytes.TrimSpace(ret)) == 0 {
				ret = []byte("{}")
			}
			if err := json.Unmarshal(ret, result); err != nil {
				return fmt.Errorf("qmp: %s: decode reply: %w", command, err)
			}
		}
		return nil
	case <-ctx.Done():
		c.forget(id)
		return fmt.Errorf("qmp: %s: %w", command, ctx.Err())
	}
}

// forget drops a pending command whose reply nobody waits for any more.
func (c *Client) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// write sends one request, honouring ctx. A failed write may have sent part
// of the request, which would corrupt the stream: the connection is closed.
func (c *Client) write(ctx context.Context, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.conn.SetWriteDeadline(time.Unix(1, 0))
		close(fired)
	})
	_, err := c.conn.Write(b)
	if !stop() {
		<-fired
		// ctx ended after the write: clear the deadline for the next one.
		c.conn.SetWriteDeadline(time.Time{})
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		} else if errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) {
			err = ErrClosed
		}
		c.fail(err)
		c.conn.Close()
		return err
	}
	return nil
}
