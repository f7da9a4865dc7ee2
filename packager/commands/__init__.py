"""CLI commands, one module per area; each command parses, calls one library function, prints."""
