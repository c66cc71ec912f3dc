"""MiniWoB++ (held-out): the real miniwob task pages in headless Chromium, AgentTuning's action language
and protocol (``AgentTuning/MiniWoB-v0``)."""
