"""The outside world, each through one narrow place: SSH (paramiko), host keys, credentials,
the state DB (sqlite3), files, the cycle lock, signals, systemd, metrics."""
