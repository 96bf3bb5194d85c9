package configs

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
)

// Bodies of the API's post-boot PATCH requests, which change a running
// VM's devices: PATCH /drives/{id} (a new backing file, a new rate
// limiter) and PATCH /network-interfaces/{id} (new rate limiters). Keys a
// PATCH cannot change (is_read_only, io_engine...) are refused as
// "unknown field `KEY`", the phrase Firecracker's clients match on.

// DrivePatch is a PATCH /drives/{id} body: only what is set changes.
type DrivePatch struct {
	DriveID     string
	PathOnHost  string       // "" keeps the current file
	RateLimiter *RateLimiter // nil keeps the current limiter; see Patch
}

// NetworkInterfacePatch is a PATCH /network-interfaces/{id} body.
type NetworkInterfacePatch struct {
	IfaceID       string
	RxRateLimiter *RateLimiter // nil keeps the current limiter; see Patch
	TxRateLimiter *RateLimiter
}

// DecodeDrivePatch decodes a PATCH /drives/{id} body: drive_id, and
// path_on_host and/or rate_limiter.
func DecodeDrivePatch(data []byte) (DrivePatch, error) {
	var p DrivePatch
	o, err := openPatch("drives", data, "drive_id", "path_on_host", "rate_limiter")
	if err != nil {
		return p, err
	}
	o.require("drive_id")
	o.str("drive_id", &p.DriveID)
	o.str("path_on_host", &p.PathOnHost)
	o.optRateLimiter("rate_limiter", &p.RateLimiter)
	if o.err != nil {
		return p, o.err
	}
	if err := CheckPathID("drives.drive_id", p.DriveID); err != nil {
		return p, err
	}
	if o.has("path_on_host") && p.PathOnHost == "" {
		return p, fieldErrorf("drives.path_on_host", "must not be empty")
	}
	return p, p.RateLimiter.validate("drives.rate_limiter")
}

// DecodeNetworkInterfacePatch decodes a PATCH /network-interfaces/{id}
// body: iface_id and the rate limiters to change.
func DecodeNetworkInterfacePatch(data []byte) (NetworkInterfacePatch, error) {
	var p NetworkInterfacePatch
	o, err := openPatch("network-interfaces", data, "iface_id", "rx_rate_limiter", "tx_rate_limiter")
	if err != nil {
		return p, err
	}
	o.require("iface_id")
	o.str("iface_id", &p.IfaceID)
	o.optRateLimiter("rx_rate_limiter", &p.RxRateLimiter)
	o.optRateLimiter("tx_rate_limiter", &p.TxRateLimiter)
	if o.err != nil {
		return p, o.err
	}
	if err := CheckPathID("network-interfaces.iface_id", p.IfaceID); err != nil {
		return p, err
	}
	if err := p.RxRateLimiter.validate("network-interfaces.rx_rate_limiter"); err != nil {
		return p, err
	}
	return p, p.TxRateLimiter.validate("network-interfaces.tx_rate_limiter")
}

// openPatch opens a PATCH body at path whose only keys may be keys.
func openPatch(path string, data []byte, keys ...string) (*object, error) {
	o, err := parseObject(path, data)
	if err != nil {
		return nil, err
	}
	for _, k := range sortedKeys(o.fields) {
		if !slices.Contains(keys, k) {
			return nil, &FieldError{Path: joinPath(path, k), Msg: fmt.Sprintf(
				"unknown field `%s` in a PATCH of %s: a running device changes only %s", k, path, strings.Join(keys[1:], " and "))}
		}
	}
	return o, nil
}

// Patch returns r with p applied, bucket by bucket as Firecracker does: a
// bucket p names replaces r's (a size of 0 turns it off), a bucket p
// leaves out stays as it is. A nil p changes nothing.
func (r *RateLimiter) Patch(p *RateLimiter) *RateLimiter {
	if p == nil {
		return r
	}
	out := &RateLimiter{}
	if r != nil {
		*out = *r
	}
	if p.Bandwidth != nil {
		b := *p.Bandwidth
		out.Bandwidth = &b
	}
	if p.Ops != nil {
		b := *p.Ops
		out.Ops = &b
	}
	return out
}

// CheckFile checks the patch's new backing file the way CheckFile checks a
// drive's (stat, never blocking), with Firecracker's words for a file
// that cannot be used: "Error manipulating the backing file: No such file
// or directory (os error 2) PATH", which its clients match on.
func (p *DrivePatch) CheckFile() error {
	if p.PathOnHost == "" {
		return nil
	}
	err := (&Drive{PathOnHost: p.PathOnHost}).CheckFile("drives")
	if err == nil {
		return nil
	}
	var errno syscall.Errno
	if _, serr := os.Stat(p.PathOnHost); errors.As(serr, &errno) {
		return &FieldError{Path: "drives.path_on_host", Msg: fmt.Sprintf("drives.path_on_host: Error manipulating the backing file: %s %s",
			osErrorText(errno), Shown(p.PathOnHost))}
	}
	return err
}
