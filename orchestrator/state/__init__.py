"""What the control plane knows: users and tokens, sessions, the device registry."""
