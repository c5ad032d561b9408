"""One module per `potstill` sub-command: `add_arguments(parser)` and `run(args) -> int`."""
