"""vane through the official MCP Python SDK, as shipped (it validates every
structured answer against the tool's output schema from tools/list).

Run by `cargo bench -p vane --bench economy` (which prepares the venv);
alone: python_sdk.py VANE_BIN WORKSPACE [N [ANSWERS.json]]. Prints one JSON
object: per call, the p50/p95 round trip in ms through ClientSession (ping,
status, plan_next limit 5, fs_read), and the SDK's own validation of each
answer in microseconds, against the published schema and against the full
one (tool_manifest) for comparison; with ANSWERS ([{name, published, full,
answer}], what the benchmark collected from every tool), the same
validation for each of them.
"""

import asyncio
import json
import statistics
import sys
import time

from importlib.metadata import version

from jsonschema.validators import validator_for
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

CALLS = [
    ("ping", None),
    ("status", {}),
    ("plan_next", {"limit": 5}),
    ("fs_read", {"path": "notes.md"}),
]


def pct(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p))]


def validation_us(schema, instance, n=2000):
    """What the SDK does per answer: a compiled (cached) validator's
    iter_errors over the structured content."""
    cls = validator_for(schema)
    v = cls(schema)
    for _ in range(100):
        list(v.iter_errors(instance))
    t = time.perf_counter()
    for _ in range(n):
        list(v.iter_errors(instance))
    return (time.perf_counter() - t) / n * 1e6


async def main(vane, ws, n, answers_file=None):
    params = StdioServerParameters(command=vane, args=["serve", "--workspace", ws])
    out = {"sdk": "mcp " + version("mcp"), "n": n, "calls": {}}
    async with stdio_client(params, errlog=sys.stderr) as (read, write):
        async with ClientSession(read, write) as s:
            await s.initialize()
            listed = {t.name: t for t in (await s.list_tools()).tools}
            manifest = await s.call_tool("tool_manifest", {})
            full = {t["name"]: t for t in manifest.structured_content["tools"]}
            for name, args in CALLS:
                async def once():
                    if name == "ping":
                        await s.send_ping()
                        return None
                    r = await s.call_tool(name, args)
                    assert not r.is_error, r
                    return r
                for _ in range(50):
                    r = await once()
                samples = []
                for _ in range(n):
                    t = time.perf_counter()
                    await once()
                    samples.append((time.perf_counter() - t) * 1000)
                entry = {
                    "p50_ms": round(statistics.median(samples), 3),
                    "p95_ms": round(pct(samples, 0.95), 3),
                }
                if r is not None:
                    sc = r.structured_content
                    entry["validate_published_us"] = round(
                        validation_us(listed[name].output_schema, sc), 1
                    )
                    entry["validate_full_us"] = round(
                        validation_us(full[name]["outputSchema"], sc), 1
                    )
                out["calls"][name] = entry
    if answers_file:
        with open(answers_file) as f:
            answers = json.load(f)
        out["validate"] = {
            a["name"]: {
                "published_us": round(validation_us(a["published"], a["answer"]), 1),
                "full_us": round(validation_us(a["full"], a["answer"]), 1),
            }
            for a in answers
        }
    print(json.dumps(out))


if __name__ == "__main__":
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    answers_file = sys.argv[4] if len(sys.argv) > 4 else None
    asyncio.run(main(sys.argv[1], sys.argv[2], n, answers_file))
