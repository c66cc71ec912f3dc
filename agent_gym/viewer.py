"""``agent-gym view``: a local web page to browse the episodes of run files.

The page lists episodes (filter by env, status, agent and score), opens one as a transcript (the
prompt, then each step's action, observation, reward and info), and shows the report's table and
score plot. Served by ``aiohttp`` on localhost; the run files are read again on every listing, so a
run that is still writing shows its new episodes on reload.

Routes: ``/`` the page; ``/api/episodes`` the episode list (JSON: ``[{"index", "episode_id",
"env", "task", "agent", "status", "end_reason", "score", "turns", "success"}]``);
``/api/episodes/{index}`` one trajectory (JSON, as stored); ``/api/report`` the report rows and
the plain-text table; ``/plot.png`` the score plot beside the paper's.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>agent-gym runs</title>
<style>
body{font-family:system-ui,sans-serif;margin:1em 2em;color:#222}
table{border-collapse:collapse;font-size:14px}td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left}
tr.ep{cursor:pointer}tr.ep:hover{background:#eef}
.turn{border-left:4px solid #ccc;margin:.6em 0;padding:.2em .8em;white-space:pre-wrap;font-family:monospace;font-size:13px}
.user{border-color:#69c}.assistant{border-color:#6a6}.system{border-color:#999}.obs{border-color:#c96}
.meta{color:#666;font-size:12px}#filters select,#filters input{margin-right:1em}
pre{background:#f6f6f6;padding:.5em;overflow:auto}
</style></head><body>
<h1>agent-gym runs</h1>
<div id="nav"><a href="#" id="to-list">episodes</a> · <a href="#report" id="to-report">report</a></div>
<section id="list">
<div id="filters">env <select id="f-env"><option value="">all</option></select>
status <select id="f-status"><option value="">all</option></select>
agent <select id="f-agent"><option value="">all</option></select>
min score <input id="f-score" type="number" min="0" max="1" step="0.1" value="0" style="width:5em">
<span id="count" class="meta"></span></div>
<table id="episodes"><thead><tr><th>env</th><th>task</th><th>agent</th><th>status</th><th>end</th>
<th>score</th><th>turns</th></tr></thead><tbody></tbody></table>
</section>
<section id="episode" hidden></section>
<section id="report" hidden><pre id="report-table"></pre><img id="plot" alt="scores beside the paper's"></section>
<script>
let episodes = [];
const $ = (id) => document.getElementById(id);
// every value from a run file goes through esc, also inside attributes: quotes too, so a role such as
// 'x" onmouseover="...' cannot open an attribute of its own
function esc(s){return (s==null?'':String(s)).replace(/[&<>"']/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'})[c]);}
function show(which){for(const id of ['list','episode','report'])$(id).hidden=(id!==which);}
function fillSelect(sel, values){for(const v of [...new Set(values)].sort()){const o=document.createElement('option');o.value=o.textContent=v;sel.appendChild(o);}}
function render(){
  const env=$('f-env').value, st=$('f-status').value, ag=$('f-agent').value, min=parseFloat($('f-score').value||'0');
  const rows=episodes.filter(e=>(!env||e.env===env)&&(!st||e.status===st)&&(!ag||e.agent===ag)&&(e.score??0)>=min);
  $('episodes').tBodies[0].innerHTML=rows.map(e=>`<tr class="ep" data-index="${esc(e.index)}"><td>${esc(e.env)}</td>
    <td>${esc(e.task)}</td><td>${esc(e.agent)}</td><td class="status">${esc(e.status)}</td><td>${esc(e.end_reason)}</td>
    <td>${e.score==null?'-':Number(e.score).toFixed(2)}</td><td>${esc(e.turns)}</td></tr>`).join('');
  $('count').textContent=`${rows.length} of ${episodes.length} episodes`;
  for(const tr of document.querySelectorAll('tr.ep'))tr.onclick=()=>openEpisode(tr.dataset.index);
}
async function openEpisode(i){
  const t=await (await fetch('/api/episodes/'+i)).json();
  let html=`<h2 id="episode-title">${esc(t.env_id)} · ${esc(t.task_id)}</h2>
    <div class="meta">agent ${esc(t.policy)}${t.model?':'+esc(t.model):''} · status <b id="episode-status">${esc(t.status)}</b>
    · end ${esc(t.end_reason)} · score <b id="episode-score">${Number(t.score).toFixed(2)}</b> · ${esc(t.steps.length)} steps</div>`;
  if(t.error)html+=`<pre>${esc(t.error)}</pre>`;
  html+='<h3>prompt</h3>'+t.prompt.map(m=>`<div class="turn ${esc(m.role)}"><span class="meta">${esc(m.role)}</span>\\n${esc(m.content)}</div>`).join('');
  html+=`<div class="turn user"><span class="meta">first observation</span>\\n${esc(t.first_observation)}</div><h3>steps</h3>`;
  t.steps.forEach((s,k)=>{html+=`<div class="step" data-step="${k}"><div class="turn assistant"><span class="meta">step ${k+1}: action</span>\\n${esc(s.action)}</div>
    <div class="turn obs"><span class="meta">observation · reward ${esc(s.reward)} · ${s.terminated?'terminated':''}${s.truncated?' truncated':''}</span>\\n${esc(s.observation)}</div>
    <details><summary class="meta">info</summary><pre>${esc(JSON.stringify(s.info,null,1))}</pre></details></div>`;});
  $('episode').innerHTML=html; show('episode');
}
async function openReport(){
  const r=await (await fetch('/api/report')).json();
  $('report-table').textContent=r.table; $('plot').src='/plot.png?'+Date.now(); show('report');
}
$('to-list').onclick=(e)=>{e.preventDefault();show('list');};
$('to-report').onclick=(e)=>{e.preventDefault();openReport();};
for(const id of ['f-env','f-status','f-agent','f-score']){$(id).oninput=render;$(id).onchange=render;}
(async()=>{episodes=await (await fetch('/api/episodes')).json();
  fillSelect($('f-env'),episodes.map(e=>e.env));fillSelect($('f-status'),episodes.map(e=>e.status));
  fillSelect($('f-agent'),episodes.map(e=>e.agent));render();document.body.dataset.ready='1';})();
</script></body></html>
"""


def _number(value: Any) -> float | None:
    """A finite float, else ``None``: one hand-edited record ("score": "high", NaN) must not make
    the whole listing fail (nor put NaN, which is not JSON, in it)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _turns(traj: Any) -> int | None:
    try:
        return int(traj.turns)
    except (TypeError, ValueError, AttributeError):
        return None


class RunViewer:
    """The episodes of ``paths`` (newest record of each episode, damaged lines skipped), as the
    routes above serve them."""

    def __init__(self, paths: Sequence[str | Path]):
        self.paths = [Path(p) for p in paths]
        missing = [str(p) for p in self.paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"no such run file: {', '.join(missing)}")

    def trajectories(self) -> list[Any]:
        from agent_gym.trajectory import newest, read_jsonl

        latest, _ = newest(t for p in self.paths for t in read_jsonl(p, []))
        return list(latest)

    def episodes(self) -> list[dict[str, Any]]:
        return [{"index": i, "episode_id": t.episode_id, "env": t.env_id, "task": t.task_id, "agent": t.agent,
                 "status": t.status, "end_reason": t.end_reason, "score": _number(t.score), "turns": _turns(t),
                 "success": bool(t.success)} for i, t in enumerate(self.trajectories())]

    def report(self) -> dict[str, Any]:
        from agent_gym.metrics import format_table, report_rows

        rows = report_rows(self.paths, [])
        return {"rows": rows, "table": format_table(rows, details=True)}

    def plot_png(self) -> bytes:
        from agent_gym.metrics import report_rows
        from agent_gym.plot import figure

        import matplotlib.pyplot as plt

        fig = figure(report_rows(self.paths, []))
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        return buf.getvalue()

    def app(self) -> Any:
        from aiohttp import web

        async def page(_request: web.Request) -> web.Response:
            return web.Response(text=PAGE, content_type="text/html")

        async def read(what: Any) -> Any:
            try:
                return await asyncio.to_thread(what)
            except OSError as exc:  # a run file deleted or made unreadable while the page is open
                raise web.HTTPNotFound(text=f"cannot read the run files: {exc}") from None

        async def episodes(_request: web.Request) -> web.Response:
            return web.json_response(await read(self.episodes))

        async def episode(request: web.Request) -> web.Response:
            trajs = await read(self.trajectories)
            text = request.match_info["index"]
            if not text.isdigit() or int(text) >= len(trajs):  # "-1" would be the last episode in Python
                raise web.HTTPNotFound(text=f"no episode {text}: there are {len(trajs)} (0 to {len(trajs) - 1})")
            t = trajs[int(text)]
            try:
                body = json.dumps(t.to_dict(), default=str)
            except (TypeError, ValueError) as exc:  # a hand-edited record (a reward that is not a number, ...)
                raise web.HTTPUnprocessableEntity(text=f"episode {text} cannot be shown: {exc}") from None
            return web.Response(text=body, content_type="application/json")

        async def report(_request: web.Request) -> web.Response:
            return web.Response(text=json.dumps(await read(self.report), default=str),
                                content_type="application/json")

        async def plot(_request: web.Request) -> web.Response:
            return web.Response(body=await asyncio.to_thread(self.plot_png), content_type="image/png")

        app = web.Application()
        app.add_routes([web.get("/", page), web.get("/api/episodes", episodes),
                        web.get("/api/episodes/{index}", episode), web.get("/api/report", report),
                        web.get("/plot.png", plot)])
        return app


def serve(paths: Sequence[str | Path], host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve the viewer until Ctrl-C (blocking). Raises ``FileNotFoundError`` for a missing file and
    ``RuntimeError`` naming the extra when aiohttp is absent."""
    try:
        from aiohttp import web
    except ImportError as exc:
        raise RuntimeError("agent-gym view needs aiohttp: pip install 'agent-gym[view]'") from exc
    viewer = RunViewer(paths)
    print(f"agent-gym view: http://{host}:{port}/ ({len(viewer.episodes())} episodes; Ctrl-C stops)", flush=True)
    web.run_app(viewer.app(), host=host, port=port, print=None)
