//! Real sshd nodes on loopback (filled in by the SSH transport).
