"""Benchmark the console's live output: 200 nodes streaming into one page in real Chromium.

Usage: .venv/bin/python bench/web_live_output.py [--nodes 200] [--seconds 10] [--rate 20]

Issue 17: 200 nodes streaming output to one browser page must not freeze it. This loads
the Commands page's run view (the real template and static/app.js) into Debian's Chromium
and feeds it the events the server's event stream would carry: ``--rate`` output events per
node per second, 80-character lines, for ``--seconds``, then every node finishes (half
with one output, half with another, so grouping has work to do). It prints the frame
intervals the page achieved (requestAnimationFrame), the long tasks (over 50 ms) the
browser reported, the events handled and the DOM size, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

import jinja2

WEB = Path(__file__).resolve().parents[1] / "src" / "ecsexec" / "web"

FEED = """
async ({nodes, seconds, rate}) => {
  const root = document.querySelector('[data-run-view]');
  const view = new window.ecsexec.RunView(root);
  view.runId = '1';
  root.hidden = false;
  const names = Array.from({length: nodes}, (_, i) => 'node-' + String(i).padStart(3, '0'));
  const frames = [];
  let last = performance.now();
  let running = true;
  (function tick(now) {
    frames.push(now - last); last = now;
    if (running) requestAnimationFrame(tick);
  })(last);
  const longTasks = [];
  new PerformanceObserver(list => list.getEntries().forEach(e => longTasks.push(e.duration)))
    .observe({type: 'longtask', buffered: true});
  view.onEvent('run_started', {type: 'run_started', nodes: names});
  names.forEach(n => view.onEvent('node_started', {type: 'node_started', node: n}));
  let events = 0, chars = 0, line = 0;
  const counters = new Map(names.map(n => [n, 0]));
  const perTick = Math.max(1, Math.round(nodes * rate / 50));  // 50 deliveries per second
  const started = performance.now();
  await new Promise(resolve => {
    const timer = setInterval(() => {
      for (let i = 0; i < perTick; i++) {
        const node = names[(line + i) % nodes];
        const count = counters.get(node) + 1;
        counters.set(node, count);
        const text = 'line ' + count + ' '.padEnd(70, '.') + '\\n';
        view.onEvent('output', {type: 'output', node: node, text: text});
        events++; chars += text.length;
      }
      line += perTick;
      if (performance.now() - started > seconds * 1000) { clearInterval(timer); resolve(); }
    }, 20);
  });
  names.forEach((n, i) => view.onEvent('node_finished', {type: 'node_finished', node: n,
      status: i % 2 ? 'succeeded' : 'failed', exit_code: i % 2 ? 0 : 1, duration_s: 1}));
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  running = false;
  const grouped = document.querySelectorAll('.node-result').length;
  view.groupToggle.checked = false; view.schedule();
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  return {frames: frames.slice(1), longTasks, events, chars, grouped,
          cards: document.querySelectorAll('.node-result').length,
          domNodes: document.getElementsByTagName('*').length,
          elapsed: (performance.now() - started) / 1000};
}
"""


def page_html() -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(WEB / "templates"), autoescape=True)
    macro = env.get_template("_macros.html").module.live_run  # type: ignore[attr-defined]
    css = (WEB / "static" / "app.css").read_text()
    script = (WEB / "static" / "app.js").read_text()
    return (
        f"<!doctype html><html><head><style>{css}</style></head><body><main class='content'>"
        f"{macro('')}</main><script>{script}</script></body></html>"
    )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--rate", type=float, default=20.0, help="output events per node per second"
    )
    args = parser.parse_args()
    chromium = (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
    )
    if chromium is None:
        sys.exit("no Chromium found: install Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_content(page_html())
        result = page.evaluate(
            FEED, {"nodes": args.nodes, "seconds": args.seconds, "rate": args.rate}
        )
        browser.close()
    frames = result["frames"]
    figures = {
        "nodes": args.nodes,
        "events": result["events"],
        "events_per_s": round(result["events"] / result["elapsed"]),
        "chars_per_s": round(result["chars"] / result["elapsed"]),
        "frames": len(frames),
        "frame_ms_median": round(statistics.median(frames), 1),
        "frame_ms_p95": round(percentile(frames, 0.95), 1),
        "frame_ms_max": round(max(frames), 1),
        "long_tasks": len(result["longTasks"]),
        "long_task_ms_max": round(max(result["longTasks"], default=0.0), 1),
        "cards_grouped": result["grouped"],
        "cards_ungrouped": result["cards"],
        "dom_elements": result["domNodes"],
    }
    print(
        f"{args.nodes} nodes, {figures['events']} output events in {result['elapsed']:.1f} s "
        f"({figures['events_per_s']}/s, {figures['chars_per_s']} chars/s)"
    )
    print(
        f"frames: {figures['frames']}, median {figures['frame_ms_median']} ms, "
        f"p95 {figures['frame_ms_p95']} ms, max {figures['frame_ms_max']} ms"
    )
    print(f"long tasks (>50 ms): {figures['long_tasks']}, longest {figures['long_task_ms_max']} ms")
    print(
        f"cards: {figures['cards_grouped']} grouped, {figures['cards_ungrouped']} ungrouped; "
        f"{figures['dom_elements']} DOM elements"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
