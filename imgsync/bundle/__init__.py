"""What travels: save formats, payloads, verification, the bundle dir, markers, wire encoding."""
