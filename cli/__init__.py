"""The `salesloop` command line."""
