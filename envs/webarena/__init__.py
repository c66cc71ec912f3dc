"""WebArena (held-out): 812 web tasks in headless Chromium against the user's own deployment of its sites.

``data`` loads the configs and the 2-shot CoT prompt, ``prompt`` holds the action language and the
run rules (pure), ``engine`` drives Chromium (Selenium + DevTools), ``evaluators`` scores an episode
as WebArena did, ``env`` wires them into ``AgentTuning/WebArena-v0``. See docs/webarena.md.
"""
