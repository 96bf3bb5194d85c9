package configs

import (
	"strings"
	"testing"
)

// TestFlintConsoleChecked: flint.console is checked as the file is read,
// so that a --console flag overriding it cannot hide a bad value.
func TestFlintConsoleChecked(t *testing.T) {
	for _, c := range []string{"stdio", "stderr", "none", "file:/tmp/x"} {
		if _, err := DecodeVMConfig([]byte(`{"boot-source": {"kernel_image_path": "k"}, "flint": {"console": "` + c + `"}}`)); err != nil {
			t.Errorf("console %q: %v", c, err)
		}
	}
	for _, c := range []string{"bogus", "file:", "Stdio", "file", " none"} {
		_, err := DecodeVMConfig([]byte(`{"boot-source": {"kernel_image_path": "k"}, "flint": {"console": "` + c + `"}}`))
		if err == nil || !strings.Contains(err.Error(), `flint.console "`+c+`": want "stdio", "stderr", "none" or "file:PATH"`) {
			t.Errorf("console %q: %v", c, err)
		}
	}
}
