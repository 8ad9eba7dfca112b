"""The graph's nodes: each reads the run state, does one step, and appends its trace."""
