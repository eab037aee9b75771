"""hastack: high availability for OpenStack-style control planes."""

__version__ = "0.1.0"
