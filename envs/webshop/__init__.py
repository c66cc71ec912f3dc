"""WebShop (Yao et al. 2022) as AgentBench played it: ``data`` (catalogue, human goals), ``engine``
(BM25 search and the text site), ``reward`` (WebShop's purchase reward), ``prompt`` (AgentBench's
conversation and reply regex), ``env`` (``AgentTuning/WebShop-v0``)."""
