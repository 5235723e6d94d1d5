"""The peer's side: receive into the inbox, the session, the records of loads, load on
arrival, what a peer says of itself."""
