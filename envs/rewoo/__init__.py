"""ReWOO (AgentTuning held-out): Planner / Worker / Solver with offline tools (Wikipedia, Calculator, SearchSOTU,
an LLM) and a recorded judge (data / engine / prompt / env)."""
