"""One module per subcommand; each returns a typed report."""
