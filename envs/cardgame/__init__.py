"""The Digital Card Game (AgentBench's Aquawar): ``data`` (the seeded schedule of games), ``engine`` (the rules
and the player SDK, reimplemented from AgentBench's C++), ``baselines`` (the opponents), ``prompt`` (the LLM
player's prompts and parsing) and ``env`` (``AgentTuning/CardGame-v0``). See docs/cardgame.md."""
