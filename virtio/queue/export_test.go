package queue

// Descs is the number of descriptors the walk visited (TTL invariant).
func (c *Chain) Descs() int { return c.descs }

// NeedEvent exposes vring_need_event for table tests.
var NeedEvent = needEvent

// PackedDist exposes packedDist for table tests.
var PackedDist = packedDist
