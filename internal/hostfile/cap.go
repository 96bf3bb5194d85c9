package hostfile

import (
	"io"
	"sync"
)

// Capped is a writer that passes at most a byte budget on to its
// destination and then drops what it is given, calling onFull once.
// Writes past the budget report success, so the writer's user (the
// guest's serial console) carries on. Safe for concurrent use.
type Capped struct {
	mu     sync.Mutex
	w      io.Writer
	left   int64
	full   bool
	onFull func()
}

// Cap returns a writer passing at most limit bytes to w; limit <= 0
// means no limit. onFull (may be nil) runs once, on the write that
// reaches the limit.
func Cap(w io.Writer, limit int64, onFull func()) io.Writer {
	if limit <= 0 {
		return w
	}
	return &Capped{w: w, left: limit, onFull: onFull}
}

func (c *Capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.full {
		return len(p), nil
	}
	n := int64(len(p))
	if n <= c.left {
		wrote, err := c.w.Write(p)
		c.left -= int64(wrote)
		return wrote, err
	}
	wrote, err := c.w.Write(p[:c.left])
	c.left -= int64(wrote)
	if err != nil {
		return wrote, err
	}
	c.full = true
	if c.onFull != nil {
		c.onFull()
	}
	return len(p), nil
}
