"""One module per subcommand: each adds its parser and a pure function tests can call."""
