"""The executor: runs resource agent operations on this node and reports what it sees."""
