"""The device stage: the serial link to a board, an emulator or the host-built firmware.

- protocol: frames and messages of firmware/protocol/PROTOCOL.md, pure functions
- link:     `Link.open(url, expected_sha256=...)`, `link.handshake()`, `link.infer(x)`
- hostfw:   the firmware built for the host with gcc, served on a loopback TCP port
"""
