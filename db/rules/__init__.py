"""Pure rule checks (no I/O): values and settings in, a list of Violations out."""
