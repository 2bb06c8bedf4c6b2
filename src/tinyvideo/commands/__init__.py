"""The `tinyvideo` commands, one module each with `add_arguments(parser)` and `run(args)`; `tinyvideo.cli`
dispatches to them. The library below never parses arguments."""
