"""The `hastack` command line."""
