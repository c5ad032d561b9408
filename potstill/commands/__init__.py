"""One module per command: `add_arguments(parser)` and `run(args)`; parsing and dispatch only."""
