"""ALFWorld: household tasks on TextWorld's PDDL engine, played with AgentBench's ReAct protocol."""
