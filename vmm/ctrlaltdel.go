package vmm

import "errors"

// SendCtrlAltDel types Ctrl-Alt-Del on the guest's PS/2 keyboard (the
// i8042 with Config.Keyboard), as Firecracker's SendCtrlAltDel action does.
// Linux's keyboard driver then signals init, which reboots; with the
// reboot=k Flint uses, the reboot ends the VM. The guest needs the atkbd
// driver and a VT (Debian's kernels have both); a guest that has not yet
// set up its keyboard ignores the keys.
func (m *Machine) SendCtrlAltDel() error {
	if !m.cfg.Keyboard {
		return errors.New("SendCtrlAltDel: the VM has no keyboard (vmm.Config.Keyboard)")
	}
	return m.plat.kbc.PressCtrlAltDel()
}
