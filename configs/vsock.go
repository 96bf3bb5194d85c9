package configs

// Firecracker's "vsock" and "entropy" sections (also PUT /vsock and PUT
// /entropy).

import "encoding/json"

// Vsock limits.
const (
	// MinGuestCID is the smallest guest CID (0-2 are reserved; 2 is the
	// host).
	MinGuestCID = 3
	// MaxGuestCID is the largest (Linux's CIDs are 32-bit; 2^32-1 is
	// VMADDR_CID_ANY).
	MaxGuestCID = 1<<32 - 2
	// MaxSocketPath is the longest path a unix socket can be bound at:
	// sun_path's 108 bytes less the terminating NUL.
	MaxSocketPath = 107
	// MaxUDSPath bounds uds_path so that "<uds_path>_<port>" (up to 11
	// more bytes) still fits a unix socket address.
	MaxUDSPath = MaxSocketPath - 11
)

// Vsock is the virtio-vsock device: the guest's CID and the unix socket
// through which host processes reach it (Firecracker's contract:
// "CONNECT <port>" on uds_path; guest connections to host port P reach
// "<uds_path>_P").
type Vsock struct {
	// VsockID is Firecracker's optional (deprecated) device id; kept
	// only so configs round-trip.
	VsockID  string `json:"vsock_id,omitempty"`
	GuestCID uint64 `json:"guest_cid"`
	UDSPath  string `json:"uds_path"`
}

// Entropy is the virtio-rng device, with an optional rate limiter.
type Entropy struct {
	RateLimiter *RateLimiter `json:"rate_limiter,omitempty"`
}

// DecodeVsock decodes a PUT /vsock body.
func DecodeVsock(data []byte) (Vsock, error) { return decodeVsock("vsock", data) }

func decodeVsock(path string, raw json.RawMessage) (Vsock, error) {
	var v Vsock
	o, err := openObject(path, raw, []string{"vsock_id", "guest_cid", "uds_path"})
	if err != nil {
		return v, err
	}
	o.require("guest_cid", "uds_path")
	o.str("vsock_id", &v.VsockID)
	var cid int
	o.integer("guest_cid", MinGuestCID, MaxGuestCID, &cid)
	v.GuestCID = uint64(cid)
	o.str("uds_path", &v.UDSPath)
	if o.err != nil {
		return v, o.err
	}
	return v, v.validate(path)
}

func (v *Vsock) validate(path string) error {
	switch {
	case v.GuestCID < MinGuestCID || v.GuestCID > MaxGuestCID:
		return fieldErrorf(joinPath(path, "guest_cid"), "%d is out of range [%d, %d]", v.GuestCID, MinGuestCID, uint64(MaxGuestCID))
	case v.UDSPath == "":
		return fieldErrorf(joinPath(path, "uds_path"), "must not be empty")
	case len(v.UDSPath) > MaxUDSPath:
		return fieldErrorf(joinPath(path, "uds_path"), "%q is %d bytes; at most %d fit a unix socket address with \"_<port>\" added",
			v.UDSPath, len(v.UDSPath), MaxUDSPath)
	}
	return nil
}

// DecodeEntropy decodes a PUT /entropy body.
func DecodeEntropy(data []byte) (Entropy, error) { return decodeEntropy("entropy", data) }

func decodeEntropy(path string, raw json.RawMessage) (Entropy, error) {
	var e Entropy
	o, err := openObject(path, raw, []string{"rate_limiter"})
	if err != nil {
		return e, err
	}
	o.optRateLimiter("rate_limiter", &e.RateLimiter)
	if o.err != nil {
		return e, o.err
	}
	return e, e.RateLimiter.validate(joinPath(path, "rate_limiter"))
}
