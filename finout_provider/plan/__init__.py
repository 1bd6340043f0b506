"""Which windows a run exports: window arithmetic (pure) and the planner."""
