"""Configuration and state types. Pure: nothing here does I/O (tests check the import rule)."""
