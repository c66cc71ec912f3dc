"""ScienceWorld (held-out): 30 elementary-science task types on the real Java engine, AgentTuning's protocol."""
