"""AgentBench's Knowledge Graph task (``AgentTuning/KnowledgeGraph-v0``): Freebase questions answered
with seven tools over ``#n`` variables, the tools run as SPARQL on a Freebase endpoint (HTTP) or a
local pyoxigraph store; scored by answer-set F1. ``data`` the questions, ontology and prompt strings;
``engine`` the tools, the SPARQL translation and the knowledge bases; ``prompt`` the prompt and reply
parsing; ``env`` the episode."""
