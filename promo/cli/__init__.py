"""The `promo` command: argument parsing, tables and server setup, thin over the flows and the core."""
