"""HotpotQA (AgentTuning held-out, from BOLAA): a ReAct agent with Search / Lookup / Finish over an offline
Wikipedia, scored by answer F1 (data / engine / prompt / env)."""
