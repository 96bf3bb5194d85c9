package api

// PUT /vsock and PUT /entropy: the virtio-vsock and virtio-rng devices,
// pre-boot only (Firecracker's endpoints and bodies).

import (
	"net/http"

	"github.com/flintvm/flint/configs"
)

// putVsock sets the vsock device (replacing one set before).
func (s *Server) putVsock(r *http.Request, body []byte) (any, error) {
	v, err := configs.DecodeVsock(body)
	if err != nil {
		return nil, err
	}
	return nil, s.update(r, func(c *configs.VMConfig) error {
		c.Vsock = &v
		return nil
	})
}

// putEntropy sets the entropy device (replacing one set before).
func (s *Server) putEntropy(r *http.Request, body []byte) (any, error) {
	e, err := configs.DecodeEntropy(body)
	if err != nil {
		return nil, err
	}
	return nil, s.update(r, func(c *configs.VMConfig) error {
		c.Entropy = &e
		return nil
	})
}
